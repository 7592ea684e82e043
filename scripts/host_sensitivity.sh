#!/usr/bin/env bash
# Device run: the study's sensitivity to the predictor (docs/evaluation.md "A wider predictor", "What the target
# needs"), on the CPU cores of
# one many-core host (the 16-core host of a lent GPU machine): the dp cells with the single stages, the lossless
# cascade and the oracle, back to back on the same prompts, with the served width trained without cell balance
# (configs/evaluation_device_narrow.yaml, runs/predictor-plain/seed{0..4}, configs/predictor_plain.yaml) and the wider
# predictor (configs/evaluation_device_wide.yaml, runs/predictor-wide/seed{0..4}, scripts/host_train_predictors.sh with
# CONFIG=configs/predictor_wide.yaml DEST=runs/predictor-wide). Carry the predictor folders. VARIANTS picks the configs
# configs/evaluation_device_<variant>.yaml (default "narrow wide"; "narrow balanced": the cell-balanced predictor,
# the served recipe, runs/predictor-balanced/seed{0..4}, configs/predictor_balanced.yaml).
# Usage on the device machine, from the repository root:
#   OUT=/some/dir ASD_GIT_REVISION=<sha> [VARIANTS="narrow balanced"] bash scripts/host_sensitivity.sh
# What comes back in $OUT: the two run folders' grid.json and traces (traces.tgz.part*: cat them together); the
# analysis and report are made where the traces go back to (asd report RUN).
source "$(dirname "$0")/gpu_env.sh"
nproc | tee "$OUT/nproc.txt"; lscpu | grep -i "model name" | tee -a "$OUT/nproc.txt"
T0=$(date +%s)
host_build_cpu  # BUILD=1: build asd._C (CPU) first (gpu_env.sh)
VARIANTS=${VARIANTS:-narrow wide}
DIRS=()
for V in $VARIANTS; do
    DIRS+=("runs/evaluation-host-$V/grid.json" "runs/evaluation-host-$V/cells")
    timeout "${EVAL_TIMEOUT:-270}" python3 -m asd evaluate --config "configs/evaluation_device_$V.yaml" --no-progress \
        > "$OUT/evaluate_$V.log" 2>&1
    echo "grid $V rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/evaluate.log"
done
tar czf /tmp/traces.tgz "${DIRS[@]}" 2>/dev/null
split -b 15M -d /tmp/traces.tgz "$OUT/traces.tgz.part"  # files come back up to 16 MiB each: cat them together
tail -n 3 "$OUT"/evaluate_*.log
ls -la "$OUT"
