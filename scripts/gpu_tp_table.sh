#!/usr/bin/env bash
# Device run (4 GPUs of one kind, about 5 minutes): everything a wall-clock cost table with 72B at tensor
# parallelism 4 needs, measured on ONE machine: the 72B TP 4 run (all GPUs; scripts/gpu_tp.sh, decode at
# batch 1/8/16/32), then the single-GPU profile of 7B/14B/32B on its GPU 0 (scripts/gpu_decode.py,
# prefill 64-2048 tokens, decode batch 1/8/16/32). docs/gpu.md, "The H200 cost table with 72B measured at TP 4".
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir bash scripts/gpu_tp_table.sh
# Writes OUT/: the files of scripts/gpu_tp.sh, profile_gpu0.json + profile_gpu0.log. Then, here:
#   asd profile --from-measurements OUT/profile_gpu0.json --tensor-parallel OUT/tp72b.json \
#       --out configs/costs/<card>-qwen2.5-tp4.json
# Committed records: results/gpu/tp72b_h200x4_run4.*, profile_h200x4_run4_gpu0.* → configs/costs/h200-qwen2.5-tp4.json.
source "$(dirname "$0")/gpu_env.sh"
OUT=$OUT TP_TIMEOUT=${TP_TIMEOUT:-240} bash scripts/gpu_tp.sh --batch 1,8,16,32 || exit
CUDA_VISIBLE_DEVICES=0 timeout "${PROFILE_TIMEOUT:-330}" python3 scripts/gpu_decode.py --sizes 7b,14b,32b \
  --deep "" --fp32-checks "" --out "$OUT/profile_gpu0.json" 2>&1 | tee "$OUT/profile_gpu0.log"
