#!/usr/bin/env bash
# Device run: the testbed evaluation grid on the CPU cores of one many-core host (the 16-core host of a lent GPU
# machine), then its analysis and report: configs/evaluation_device.yaml (900 cells, local executor, 15 tasks at
# once, one torch thread each) and configs/evaluation_device_features.yaml (the predictor's feature ablations).
# Needs the predictors trained at seeds 0-4 in runs/predictor/seed{0..4}/ (asd train-predictor; carry them).
# Usage on the device machine, from the repository root:
#   OUT=/some/dir ASD_GIT_REVISION=<sha> bash scripts/host_evaluation.sh
# CONFIG and RUN pick another grid and its run folder (jobs.output_dir), e.g. the headline at 200 prompts:
#   CONFIG=configs/evaluation_device_headline.yaml RUN=runs/evaluation-host-headline NO_FEATURES=1 NO_TRACES=1
# NO_TRACES=1: the traces stay there (too large to come back); the analysis and report are made there instead.
# REPLAY_RECORD=FILE: copy that replay record into each run folder's replay/ before its report.
# A killed grid resumes (finished cells are skipped) when started again; what comes back is in $OUT:
# the two run folders' grid.json, analysis, report and figures (evaluation_host.tgz) and the traces (traces.tgz).
source "$(dirname "$0")/gpu_env.sh"
nproc | tee "$OUT/nproc.txt"; lscpu | grep -i "model name" | tee -a "$OUT/nproc.txt"
T0=$(date +%s)
host_build_cpu  # BUILD=1: build asd._C (CPU) first (gpu_env.sh)
CONFIG=${CONFIG:-configs/evaluation_device.yaml}
RUN=${RUN:-runs/evaluation-host}
RUNS=("$RUN")
timeout "${EVAL_TIMEOUT:-420}" python3 -m asd evaluate --config "$CONFIG" > "$OUT/evaluate.log" 2>&1
echo "grid rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/evaluate.log"
if [ -z "${NO_FEATURES:-}" ]; then  # NO_FEATURES=1: the main grid only
timeout "${FEATURES_TIMEOUT:-90}" python3 -m asd evaluate --config configs/evaluation_device_features.yaml \
    > "$OUT/evaluate_features.log" 2>&1
echo "features rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/evaluate.log"
RUNS+=(runs/evaluation-host-features)
fi
if [ -z "${NO_TRACES:-}" ]; then
TRACES=(); for R in "${RUNS[@]}"; do TRACES+=("$R/grid.json" "$R/cells"); done
tar czf /tmp/traces.tgz "${TRACES[@]}" 2>/dev/null
split -b 15M -d /tmp/traces.tgz "$OUT/traces.tgz.part"  # files come back up to 16 MiB each: cat them together
fi
if [ -z "${NO_REPORT:-}" ]; then  # NO_REPORT=1: leave the analysis to the machine the traces go back to
for R in "${RUNS[@]}"; do
    if [ -n "${REPLAY_RECORD:-}" ]; then  # a one-GPU replay record (docs/analysis.md#replay) for the report
        mkdir -p "$R/replay" && cp "$REPLAY_RECORD" "$R/replay/"
    fi
    timeout "${REPORT_TIMEOUT:-60}" python3 -m asd analyze "$R" --resamples "${RESAMPLES:-2000}" \
        --record "$R/record.json" > "$OUT/report_$(basename "$R").log" 2>&1 &&
    timeout "${REPORT_TIMEOUT:-60}" python3 -m asd report "$R" --resamples "${RESAMPLES:-2000}" \
        >> "$OUT/report_$(basename "$R").log" 2>&1
    echo "report $R rc $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/evaluate.log"
done
fi
tar czf "$OUT/evaluation_host.tgz" --exclude=cells --exclude=submitit "${RUNS[@]}" logs 2>/dev/null
tail -5 "$OUT/evaluate.log"
ls -la "$OUT"
