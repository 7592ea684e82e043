#!/usr/bin/env bash
# Device run (one GPU): train testbed stages concurrently, calibrate per knowledge-base bucket on the validation
# prompts (seed 12345, never the held-out test prompts of seed 0), and pack the result for the device
# tool's $OUT (≤ 8 files of ≤ 16 MiB): weights + logs as a split tar. docs/testbed.md, "Training runs".
# Writes OUT/: calibration.json and testbed.tar.part-* (weights/ and logs/ of the run; unpack with
#   cat testbed.tar.part-* | tar xf -). Committed records: results/testbed_training/.
# Run (on the GPU machine, repo root):
#   OUT=/some/dir [STAGES="s3"] [KEEP="s0 s1"] [CAL_N=100] bash scripts/train_testbed_gpu.sh [config]
# KEEP: committed stages (asd/testbed/weights/<name>) calibrated beside the new ones, as <name>.
# Longer than one device command (10 min): start it with setsid in the background, OUT on /tmp, and
# poll; copy $OUT into the device tool's $OUT at the end (docs/testbed.md, "Training runs").
set -euo pipefail
CONFIG=${1:-configs/testbed.yaml}
WORK=${WORK:-/tmp/testbed-run}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false ASD_GIT_REVISION=${ASD_GIT_REVISION:-unknown}
rm -rf "$WORK"; mkdir -p "$WORK/logs" "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
STAGE_ARGS=""; for s in ${STAGES:-}; do STAGE_ARGS="$STAGE_ARGS --stage $s"; done
python3 -m asd.testbed.train --config "$CONFIG" --out "$WORK" $STAGE_ARGS 2>&1 | grep -v -E "Writing model shards" || true
echo "train wall: $(( $(date +%s) - start )) s"
CAL="$WORK/calibrate"; mkdir -p "$CAL"
for s in "$WORK"/weights/*/; do ln -s "$(realpath "$s")" "$CAL/$(basename "$s")"; done
for s in ${KEEP:-}; do ln -s "$(realpath asd/testbed/weights/$s)" "$CAL/$s"; done
python3 -m asd.testbed.quality --weights "$CAL" --n "${CAL_N:-50}" --device cuda --batch-size 512 \
  --out "$WORK/logs/calibration.json" 2>&1 | grep -v -E "Loading weights|it/s\]$" || true
echo "total wall: $(( $(date +%s) - start )) s"
cp "$WORK/logs/calibration.json" "$OUT/" || true
(cd "$WORK" && tar cf - weights logs | split -b 15M - "$OUT/testbed.tar.part-")
ls -la "$OUT"
echo "DONE"
