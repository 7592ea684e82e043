#!/usr/bin/env bash
# Device run for issue 7 (one H100): GPU tests of the graph path, then the decode/prefill profile of
# Qwen2.5 7B/14B/32B shapes with the eager ceiling and the copy bandwidth, all in one process per step.
# Usage on the device machine, from the repository root:  OUT=/some/dir bash scripts/gpu_profile.sh
source "$(dirname "$0")/gpu_env.sh"
# the device copy has no .git: pass ASD_GIT_REVISION=$(git rev-parse HEAD) in the command for provenance
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/nvidia_smi.txt"
timeout 120 python3 -m pytest tests/models/test_cuda_graph.py -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log"
timeout "${PROFILE_TIMEOUT:-450}" python3 scripts/gpu_decode.py --out "$OUT/profile.json" "$@" 2>&1 | tee "$OUT/gpu_decode.log"
