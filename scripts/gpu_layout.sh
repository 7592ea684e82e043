#!/usr/bin/env bash
# Device run: the co-located layout (docs/layout.md) — every Qwen2.5-shaped stage resident at once with its
# tensor-parallel degree (random bf16 weights), per-stage costs measured while all are resident, and the
# testbed's recorded cascade calls replayed between them against the final stage alone.
# Run (repository root), NGPU = the devices of the layout's config (1: one process; more: torchrun):
#   ASD_GIT_REVISION=<sha> OUT=/some/dir NGPU=1 CONFIG=configs/layout_h200x1.yaml bash scripts/gpu_layout.sh
#   ASD_GIT_REVISION=<sha> OUT=/some/dir NGPU=8 CONFIG=configs/layout_h200x8.yaml bash scripts/gpu_layout.sh
# Extra arguments go to `python -m asd.layout run` (e.g. --quick, --no-profile, --no-compile). ROUTES overrides the
# route files (default: both committed under results/routes/). LAYOUT_TIMEOUT (seconds, default 560) bounds the run.
# SMOKE=1 first runs the GPU tests of the TP decoder and of the runner on tiny shapes (pytest -m gpu, ≤ 240 s) and
# stops if they fail.
# Writes OUT/: nvidia_smi.txt, (pytest_gpu_layout.log,) layout.log, and from the run <name>.json (cost table, configs/costs format),
#   <name>.measurements.json, <name>.layout.json (memory, per-stage costs, replays); report.txt (the tables).
# Then, here: python -m asd.layout report OUT/<name>.layout.json --plot docs/img/<name>.png; copy the cost table
# and its measurements into configs/costs/, the record into results/gpu/, and add their lines to results/README.md.
source "$(dirname "$0")/gpu_env.sh"
N=${NGPU:-1}
CONFIG=${CONFIG:-configs/layout_h200x1.yaml}
ROUTES=${ROUTES:-results/routes/testbed_dp_inf.json results/routes/testbed_random.json}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
if [ "${SMOKE:-0}" = 1 ]; then
  timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/models/test_tensor_parallel.py \
    tests/layout/test_runner.py 2>&1 | tee "$OUT/pytest_gpu_layout.log" | tail -15
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "GPU smoke tests failed: see $OUT/pytest_gpu_layout.log"; exit 1; }
fi
if [ "$N" = 1 ]; then
  RUN=(python3 -m asd.layout)
else
  RUN=(torchrun --nproc_per_node "$N" -m asd.layout)
fi
# shellcheck disable=SC2086
timeout "${LAYOUT_TIMEOUT:-560}" "${RUN[@]}" run --config "$CONFIG" --routes $ROUTES --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/layout.log"
rc=${PIPESTATUS[0]}
for rec in "$OUT"/*.layout.json; do
  [ -e "$rec" ] && python3 -m asd.layout report "$rec" --routes $ROUTES | tee "$OUT/report.txt"
done
exit "$rc"
