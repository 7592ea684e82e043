"""What the scheduler says about a run's jobs, and the run folder's record of its submissions (``jobs.json``).

``asd submit`` records every submission it makes (SLURM job ids and names, or the local submitting process)
in ``<run>/jobs.json`` and, before submitting again, asks whether any recorded job is still queued or running
(``squeue`` for SLURM: a job it lists under the recorded name; for the local executor: a recorded task
process, same pid and start time, still alive on this host). A run has at most one live submission per phase.
:func:`sacct_states` gives the final state and exit code of ended SLURM jobs (why a task failed).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

JOBS_FILE = "jobs.json"
LOCK_FILE = ".submit.lock"
KEEP_SUBMISSIONS = 50  # records kept in jobs.json (oldest dropped)
# squeue lists jobs slurmctld still holds; these states mean the job has ended
ENDED_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
    "REVOKED",
    "COMPLETING",  # its processes are being ended: it does no more work
    "UNKNOWN",  # ended, as far as squeue can tell (no accounting to ask)
}
NEVER_RUNS = "DependencyNeverSatisfied"  # a pending job whose dependency failed (kill-on-invalid-dep ends it)


class SchedulerError(RuntimeError):
    """The scheduler could not be asked (squeue/sacct failed)."""


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SchedulerError(f"{cmd[0]} did not answer in {timeout:.0f} s") from e


def squeue_live(job_ids: list[str], completing: bool = False) -> dict[str, tuple[str, str]]:
    """``{job id: (state, job name)}`` of the jobs among ``job_ids`` (array ids expand to their tasks) that
    SLURM still queues or runs; with ``completing`` also those whose processes are still being ended (a
    cancelled task can outlive its CANCELLED state by SLURM's KillWait). Empty when none is; SchedulerError
    when squeue fails otherwise."""
    if not job_ids:
        return {}
    r = _run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%j"])
    if r.returncode != 0:
        if "Invalid job id" in r.stderr:  # every id has left slurmctld's memory: none is live
            return {}
        raise SchedulerError(f"squeue failed: {r.stderr.strip()[:200]}")
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) != 4 or parts[2] == NEVER_RUNS:
            continue
        if parts[1] not in ENDED_STATES or (completing and parts[1] == "COMPLETING"):
            out[parts[0]] = (parts[1], parts[3])
    return out


def sacct_states(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """``{job id: (state, exit code "code:signal", reason)}`` from ``sacct`` (allocations only; the latest run of a
    requeued job). The exit code is the job steps' (``DerivedExitCode``) when one of them died of a signal:
    srun reports a task killed by SIGKILL as the batch script's exit code 9 and the step's signal 9. Jobs
    sacct does not know yet are absent; SchedulerError when sacct fails. ``reason``: why it was pending last
    (``Dependency`` for a job ended by ``--kill-on-invalid-dep``)."""
    if not job_ids:
        return {}
    fields = "JobID,State,ExitCode,DerivedExitCode,Reason"
    r = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", fields])
    if r.returncode != 0:
        raise SchedulerError(f"sacct failed: {r.stderr.strip()[:200]}")
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            derived_signal = parts[3].partition(":")[2]
            out[parts[0]] = (parts[1], parts[3] if derived_signal not in ("", "0") else parts[2], parts[4])
    return out


def _start_time(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, /proc) to tell it from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or _start_time(pid) in (None, start)


@contextlib.contextmanager
def submit_lock(run_dir: Path) -> Iterator[None]:
    """Serialise submissions of one run folder (check, submit, record) between processes on a shared disk."""
    import fcntl

    with open(run_dir / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_submissions(run_dir: Path) -> list[dict]:
    try:
        rec = json.loads((run_dir / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return []
    subs = rec.get("submissions") if isinstance(rec, dict) else None
    return [s for s in subs if isinstance(s, dict)] if isinstance(subs, list) else []


def _write_submissions(run_dir: Path, subs: list[dict]) -> None:
    tmp = run_dir / f"{JOBS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"submissions": subs[-KEEP_SUBMISSIONS:]}, indent=1))
    tmp.replace(run_dir / JOBS_FILE)


def record_submission(run_dir: Path, entry: dict) -> None:
    """Append ``entry`` to ``jobs.json`` (atomically replaced)."""
    _write_submissions(run_dir, [*read_submissions(run_dir), entry])


def submission_entry(
    executor: str, phase: str, folder: Path, jobs: dict[str, str], names: dict[str, str], pids: list[int]
) -> dict:
    """A ``jobs.json`` record: ``jobs`` = {role: SLURM job id} (roles "array", "merge"), ``names`` = {job id:
    job name}, ``processes`` = [[pid, start time]] of local task processes."""
    return {
        "executor": executor,
        "phase": phase,
        "submitted_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "folder": str(folder),
        "jobs": jobs,
        "names": names,
        "processes": [[pid, _start_time(pid)] for pid in pids],
    }


def add_processes(run_dir: Path, folder: Path, pids: list[int]) -> None:
    """Add local task processes (the merge, submitted after the array) to the record of submission ``folder``."""
    subs = read_submissions(run_dir)
    for sub in subs:
        if sub.get("folder") == str(folder):
            sub["processes"] = [*sub.get("processes", []), *[[pid, _start_time(pid)] for pid in pids]]
    _write_submissions(run_dir, subs)


def live_submission(run_dir: Path, phase: str) -> str | None:
    """A sentence naming the recorded submission of ``phase`` that is still queued or running, with how to
    wait for it or stop it; None if there is none. SLURM jobs whose id now belongs to a job of another name
    (a cluster whose state was wiped reuses ids) do not count."""
    for sub in reversed(read_submissions(run_dir)):
        if sub.get("phase") != phase:
            continue
        if sub.get("executor") == "local":
            if sub.get("host") != os.uname().nodename:
                continue
            alive = [int(p) for p, start in sub.get("processes", []) if _process_alive(int(p), start)]
            if not alive:
                continue
            return (
                f"{run_dir} is still running from an earlier `asd submit` (local executor: task process(es) "
                f"{', '.join(map(str, alive))} of pid {sub.get('pid')} on {sub['host']}, submitted "
                f"{sub.get('submitted_utc')}): nothing submitted; wait for it (`asd status {run_dir}`), or stop "
                f"it (`kill {' '.join(map(str, alive))}`) and rerun to resume"
            )
        ids = [str(j) for j in sub.get("jobs", {}).values() if j]
        if not ids or shutil.which("squeue") is None:
            continue
        names = sub.get("names", {})
        live = {
            jid: st
            for jid, (st, name) in squeue_live(ids).items()
            if name == names.get(jid.split("_")[0], name)  # an array task carries its array's name
        }
        if not live:
            continue
        roles = {str(v): k for k, v in sub.get("jobs", {}).items()}
        parts = []
        for jid in ids:
            states = [st for t, st in live.items() if t == jid or t.split("_")[0] == jid]
            if states:
                counts = {s: states.count(s) for s in sorted(set(states))}
                what = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
                parts.append(f"{roles.get(jid, 'job')} {jid}: {what}")
        return (
            f"{run_dir} is still queued or running from an earlier `asd submit` (SLURM {'; '.join(parts)}; "
            f"submitted {sub.get('submitted_utc')}): nothing submitted; wait for it (`asd status {run_dir}`), "
            f"or cancel it (`scancel {' '.join(ids)}`) and rerun to resume"
        )
    return None
