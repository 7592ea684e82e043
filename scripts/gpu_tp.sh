#!/usr/bin/env bash
# Device run (N GPUs, default 4; about 1 minute): tensor-parallel decode/prefill of the 72B shape
# (asd/models/tensor_parallel.py under torchrun, NCCL, CUDA graphs), after the TP == one-device check on a tiny
# fp32 model. docs/gpu.md, "72B at tensor parallelism 4".
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir [NGPU=4] bash scripts/gpu_tp.sh [more args]
#   (extra arguments go to python -m asd.models.tensor_parallel, e.g. --batch 1,8,16,32)
# Writes OUT/: nvidia_smi_tp.txt, tp72b.json (what asd profile --tensor-parallel reads), gpu_tp.log.
# Committed records: results/gpu/tp72b_h200x4*.json/.log.
source "$(dirname "$0")/gpu_env.sh"
N=${NGPU:-4}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi_tp.txt"
timeout "${TP_TIMEOUT:-420}" torchrun --nproc_per_node "$N" -m asd.models.tensor_parallel --check --size 72b \
  --out "$OUT/tp72b.json" "$@" 2>&1 | tee "$OUT/gpu_tp.log"
