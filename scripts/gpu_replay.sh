#!/usr/bin/env bash
# Device run (one H200): replay a run's recorded stage calls through random-weight Qwen2.5 7B/14B/32B, timed
# against configs/costs/h200-qwen2.5-tp4.json (docs/analysis.md#replay; scripts/gpu_replay.py).
# Usage on the device machine, from the repository root (about 3-6 minutes: build, compile, graphs, calls):
#   OUT=/some/dir bash scripts/gpu_replay.sh [CALLS_JSON] [extra scripts/gpu_replay.py replay options]
# CALLS_JSON defaults to the committed results/gpu/replay_calls_testbed_mini.json; write another one here with
#   python scripts/gpu_replay.py extract RUN --out results/gpu/replay_calls_<name>.json
source "$(dirname "$0")/gpu_env.sh"
CALLS=${1:-results/gpu/replay_calls_testbed_mini.json}
shift || true
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv > "$OUT/nvidia_smi.txt" 2>&1
timeout "${REPLAY_TIMEOUT:-540}" python3 scripts/gpu_replay.py replay "$CALLS" \
  --table configs/costs/h200-qwen2.5-tp4.json --out "$OUT/replay_h200.json" "$@" 2>&1 | tee "$OUT/replay_h200.log"
