#!/usr/bin/env bash
# Device run (one H200, about 6 minutes): is the replay off because of the table or the machine? Measures the
# cost profile of Qwen2.5 7B/14B/32B on this machine with prefill timed through the engines' eager pass and
# decode at the batch sizes the testbed run used, then replays a run's recorded calls (3 timed runs per call,
# median) against the committed table. Here afterwards: `scripts/gpu_replay.py table` + `reprice` price the
# same measurements with the table of this machine (docs/analysis.md#replay).
# Usage on the device machine, from the repository root:
#   OUT=/some/dir ASD_GIT_REVISION=<sha> bash scripts/gpu_replay_check.sh [CALLS_JSON]
source "$(dirname "$0")/gpu_env.sh"
CALLS=${1:-results/gpu/replay_calls_testbed_host.json}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.mem --format=csv \
  > "$OUT/nvidia_smi.txt" 2>&1
nproc > "$OUT/nproc.txt"; lscpu | grep -i "model name" >> "$OUT/nproc.txt"
T0=$(date +%s)
timeout "${PROFILE_TIMEOUT:-270}" python3 scripts/gpu_decode.py --out "$OUT/profile_eager_prefill.json" \
  --sizes 7b,14b,32b --deep "" --fp32-checks "" --eager-batch "" --decode-batch 1,4,8,16 --prefill-path eager \
  > "$OUT/profile.log" 2>&1
echo "profile rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/profile.log"
timeout "${REPLAY_TIMEOUT:-240}" python3 scripts/gpu_replay.py replay "$CALLS" --repeats 3 \
  --table configs/costs/h200-qwen2.5-tp4.json --out "$OUT/replay_h200.json" > "$OUT/replay_h200.log" 2>&1
echo "replay rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/replay_h200.log"
tail -8 "$OUT/profile.log"; tail -8 "$OUT/replay_h200.log"
