#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine for the tests marked `slurm` (make test runs it).
#
# Installs Debian's slurm-wlm, munge, slurmdbd + mariadb-server (submitit needs `sacct` to see jobs that end
# without a result) and hdf5-tools (h5ls/h5dump, used by the trace tests); writes a one-node slurm.conf
# (CPUs = nproc) with state, spool, pid and log files under $ASD_SLURM_DIR (default /tmp/asd-slurm); starts
# munged, mariadbd, slurmdbd, slurmctld and slurmd; waits until the node is idle.
# Idempotent: when every daemon's pid file names a live process and the node answers, it does nothing.
# Needs root (no systemd here: the daemons are started by hand). Settings and pitfalls: docs/jobs.md.
set -euo pipefail

DIR="${ASD_SLURM_DIR:-/tmp/asd-slurm}"
DB_PORT="${ASD_SLURM_DB_PORT:-3307}"
HOST="$(hostname -s)"
NCPU="$(nproc)"

die() { echo "slurm_up: error: $*" >&2; exit 1; }
log() { echo "slurm_up: $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts munged/slurmctld/slurmd); try: sudo bash $0"

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9   # (daemons start with 9>&- so they do not inherit the lock) two `make test` at once: the second waits, then finds the cluster up

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_ready() {
  local st
  st="$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -1)" || return 1
  case "$st" in idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;; *) return 1 ;; esac
}

if alive "$DIR/run/munged.pid" && alive "$DIR/run/mariadbd.pid" && alive "$DIR/run/slurmdbd.pid" \
   && alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && node_ready; then
  log "cluster already up (node $HOST, state in $DIR)"
  exit 0
fi

# ---- packages ---------------------------------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v h5dump >/dev/null || need+=(hdf5-tools)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (no network or no Debian mirror?)"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >"$DIR/apt.log" 2>&1 \
    || { tail -20 "$DIR/apt.log" >&2; die "apt-get install ${need[*]} failed (full log: $DIR/apt.log)"; }
fi

mkdir -p "$DIR"/{run,log,state,spool,mysql} /run/munge /etc/slurm
chmod 755 "$DIR"   # slurmstepd and the job's user must traverse it

# ---- munge ------------------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
chown munge:munge /run/munge
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged 9>&- || die "munged failed to start (see /var/log/munge/munged.log)"
fi
ln -sf /run/munge/munged.pid "$DIR/run/munged.pid"

# ---- mariadb (accounting storage for slurmdbd; sacct reads it) --------------------------------------------
if ! alive "$DIR/run/mariadbd.pid"; then
  if [ ! -d "$DIR/mysql/mysql" ]; then
    log "initialising the accounting database in $DIR/mysql"
    mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
      >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (log: $DIR/log/mariadb-install.log)"
  fi
  mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" \
    --skip-log-bin --innodb-buffer-pool-size=64M >/dev/null 2>&1 9>&- &
  for _ in $(seq 100); do [ -S "$DIR/run/mysqld.sock" ] && alive "$DIR/run/mariadbd.pid" && break; sleep 0.1; done
  [ -S "$DIR/run/mysqld.sock" ] || die "mariadbd did not start (log: $DIR/log/mariadbd.log)"
  mariadb --socket="$DIR/run/mysqld.sock" -uroot -e \
    "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'asd-slurm';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;" \
    || die "could not create the slurm database user"
fi

# ---- configuration ----------------------------------------------------------------------------------------
MEM_MIB="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
cat >"$DIR/slurm.conf.new" <<EOF
# Written by scripts/slurm_up.sh: a one-node test cluster without systemd or cgroups.
ClusterName=asd
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
EnforcePartLimits=ALL
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_min_interval=100000,sched_interval=1
MinJobAge=300
KillWait=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MIB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$DIR/slurm.conf.new" /etc/slurm/slurm.conf

cat >/etc/slurm/slurmdbd.conf <<EOF
# Written by scripts/slurm_up.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=asd-slurm
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
chmod 600 /etc/slurm/slurmdbd.conf

# ---- daemons ----------------------------------------------------------------------------------------------
if ! alive "$DIR/run/slurmdbd.pid"; then
  slurmdbd 9>&- || die "slurmdbd failed to start (log: $DIR/log/slurmdbd.log)"
  for _ in $(seq 100); do alive "$DIR/run/slurmdbd.pid" && (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.1; done
  alive "$DIR/run/slurmdbd.pid" || die "slurmdbd exited (log: $DIR/log/slurmdbd.log)"
fi
if ! alive "$DIR/run/slurmctld.pid"; then
  slurmctld 9>&- || die "slurmctld failed to start (log: $DIR/log/slurmctld.log)"
fi
if ! alive "$DIR/run/slurmd.pid"; then
  slurmd 9>&- || die "slurmd failed to start (log: $DIR/log/slurmd.log)"
fi

for _ in $(seq 150); do node_ready && break; sleep 0.2; done
if ! node_ready; then
  scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  for _ in $(seq 50); do node_ready && break; sleep 0.2; done
fi
node_ready || die "node $HOST did not become idle: $(sinfo -h -N -o '%N %t %E' 2>&1); logs in $DIR/log"
# sacct must answer (submitit polls it for jobs that end without a result)
for _ in $(seq 50); do sacct -n -X -S now-1minute >/dev/null 2>&1 && break; sleep 0.2; done
sacct -n -X -S now-1minute >/dev/null 2>&1 || die "sacct does not answer (slurmdbd log: $DIR/log/slurmdbd.log)"
log "cluster up: node $HOST, $NCPU CPUs, state in $DIR"
