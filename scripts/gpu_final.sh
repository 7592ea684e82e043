#!/usr/bin/env bash
# Device run (one GPU, about 6 minutes): GPU tests of the graph path (ragged chunks included), a 7B decode
# re-check of StaticDecoder (floor and eager ceiling in the same run), and the cascade end to end on the GPU
# with the lossless check (scripts/gpu_e2e.py). docs/gpu.md, "End to end on the GPU".
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir bash scripts/gpu_final.sh
# Writes OUT/: nvidia_smi.txt, pytest_gpu.log, e2e.json + gpu_e2e.log, profile_7b.json + gpu_decode_7b.log.
# Committed records: results/gpu/e2e_h200.json, gpu_e2e_h200.log, pytest_gpu_h200.log.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
timeout 120 python3 -m pytest tests/models/test_cuda_graph.py -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log"
timeout 180 python3 scripts/gpu_e2e.py --out "$OUT/e2e.json" 2>&1 | tee "$OUT/gpu_e2e.log"
timeout 120 python3 scripts/gpu_decode.py --out "$OUT/profile_7b.json" --sizes 7b --deep "" --fp32-checks "" --quick \
  2>&1 | tee "$OUT/gpu_decode_7b.log"
