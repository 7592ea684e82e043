#!/usr/bin/env bash
# Device run for issue 7 (4 GPUs): tensor-parallel decode/prefill of the 72B shape, after the TP == 1-device
# check on a tiny model. NVLink multicast stays off (KINDS.md).
# Usage on the device machine, from the repository root:  OUT=/some/dir bash scripts/gpu_tp.sh
source "$(dirname "$0")/gpu_env.sh"
# the device copy has no .git: pass ASD_GIT_REVISION=$(git rev-parse HEAD) in the command for provenance
N=${NGPU:-4}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi_tp.txt"
timeout "${TP_TIMEOUT:-420}" torchrun --nproc_per_node "$N" scripts/gpu_tp.py --check --size 72b \
  --out "$OUT/tp72b.json" "$@" 2>&1 | tee "$OUT/gpu_tp.log"
