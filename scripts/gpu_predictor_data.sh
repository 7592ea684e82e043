#!/usr/bin/env bash
# Device run: the quality predictor's 100,000-sample training set on one GPU, in one process (no submitit):
# configs/predictor_data_gpu.yaml (fast engine path); if that fails, the same run on the eager path.
# Usage on the device machine, from the repository root:
#   OUT=/some/dir ASD_GIT_REVISION=<sha> bash scripts/gpu_predictor_data.sh
# The run resumes from its last flushed batch if started again (e.g. after the 10-minute command limit).
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
T0=$(date +%s)
timeout "${GEN_TIMEOUT:-560}" python3 -m asd generate-data --config configs/predictor_data_gpu.yaml \
    --executor in-process "$@" > "$OUT/generate.log" 2>&1
RC=$?
RUN=runs/predictor-data
if [ $RC -ne 0 ] && ! grep -q "Terminated\|timed out" "$OUT/generate.log" && [ $RC -ne 124 ]; then
    echo "fast path failed (rc $RC): eager path" | tee -a "$OUT/generate.log"
    RUN=runs/predictor-data-eager
    timeout "${GEN_TIMEOUT:-560}" python3 -m asd generate-data --config configs/predictor_data_gpu.yaml \
        --executor in-process --set predictor_data.fast=false --output-dir $RUN "$@" >> "$OUT/generate.log" 2>&1
    RC=$?
fi
echo "rc $RC, $(( $(date +%s) - T0 )) s" | tee -a "$OUT/generate.log"
tail -c 4000 "$OUT/generate.log" | tr '\r' '\n' | tail -40
python3 -m asd status "$RUN" > "$OUT/status.txt" 2>&1
# The merged file (~150 MB with the responses' tokens) is over the device's 16 MiB per returned file: keep the
# training columns, gzip-compressed (scripts/compact_predictor_data.py), in 15 MiB parts (cat them back together).
if [ -f "$RUN/traces.h5" ]; then
    ls -l "$RUN/traces.h5" | tee -a "$OUT/generate.log"
    python3 scripts/compact_predictor_data.py "$RUN/traces.h5" /tmp/predictor_data_compact.h5 | tee -a "$OUT/generate.log"
    split -b 15M -d /tmp/predictor_data_compact.h5 "$OUT/predictor_data_compact.h5.part"
    sha256sum /tmp/predictor_data_compact.h5 | tee "$OUT/predictor_data_compact.sha256"
fi
exit $RC
