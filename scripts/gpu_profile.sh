#!/usr/bin/env bash
# Device run (one GPU, about 6 minutes on an H100): GPU tests of the graph path, then the decode/prefill profile
# of Qwen2.5 7B/14B/32B shapes (72B by depth extrapolation) with the eager ceiling and the copy bandwidth, one
# process per step (scripts/gpu_decode.py; extra arguments go to it). docs/gpu.md, "Method".
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir bash scripts/gpu_profile.sh [gpu_decode.py args]
# Writes OUT/: nvidia_smi.txt, pytest_gpu.log, profile.json (asd.profiler format; refit it with
#   asd profile --from-measurements OUT/profile.json --out configs/costs/<card>-qwen2.5.json) and gpu_decode.log.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/nvidia_smi.txt"
timeout 120 python3 -m pytest tests/models/test_cuda_graph.py -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log"
timeout "${PROFILE_TIMEOUT:-450}" python3 scripts/gpu_decode.py --out "$OUT/profile.json" "$@" 2>&1 | tee "$OUT/gpu_decode.log"
