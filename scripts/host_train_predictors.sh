#!/usr/bin/env bash
# Device run: train the evaluation's predictors, seeds 0-4, on the CPU cores of one many-core host (the 16-core host
# of a lent GPU machine): CONFIG (default configs/predictor.yaml) with the seed, out_dir DEST/seed{s} (default
# runs/predictor, the checkpoints configs/evaluation_device.yaml serves as runs/predictor/seed{seed}/checkpoint) and
# no feature ablations (those are the committed predictor's, `asd train-predictor --config configs/predictor.yaml`);
# every seed in its own process, its members in WORKERS processes (default 3: 5 seeds x 3 = 15 cores).
# Needs the training set runs/predictor-data/data.h5 (carry it). Usage on the device machine, from the repository root:
#   OUT=/some/dir [CONFIG=configs/predictor_wide.yaml DEST=runs/predictor-wide] bash scripts/host_train_predictors.sh
# What comes back in $OUT: predictors.tgz (the five run folders: checkpoint, metrics.json, figures, config, log).
source "$(dirname "$0")/gpu_env.sh"
T0=$(date +%s)
host_build_cpu  # BUILD=1: build asd._C (CPU) first (gpu_env.sh)
CONFIG=${CONFIG:-configs/predictor.yaml} DEST=${DEST:-runs/predictor}
mkdir -p "$DEST"
for s in 0 1 2 3 4; do
    python3 - "$s" "${WORKERS:-3}" "$CONFIG" "$DEST" <<'EOF'
import sys, yaml
seed, workers, config, dest = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(config) as f:
    cfg = yaml.safe_load(f)
t = cfg["predictor_training"]
t.update(seed=seed, out_dir=f"{dest}/seed{seed}", checkpoint="", results="", plots_dir="",
         ablations=[], workers=workers, progress=False)
with open(f"{dest}/seed{seed}.yaml", "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)
EOF
    ( timeout "${TRAIN_TIMEOUT:-540}" python3 -m asd train-predictor --config "$DEST/seed$s.yaml" \
        > "$DEST/seed$s.log" 2>&1; echo "rc=$? after $(( $(date +%s) - T0 )) s" >> "$DEST/seed$s.log" ) &
done
wait
grep -h "^rc=" "$DEST"/seed*.log | tee "$OUT/train.txt"
tar czf "$OUT/predictors.tgz" "$DEST"/seed[0-4]*
ls -la "$OUT"
