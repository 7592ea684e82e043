#!/usr/bin/env bash
# The cascade's decision overhead at batch 16, K = 4, on 2 CPU cores: the two benchmarks of
# benchmarks/test_bench_cascade.py that time it (test_bench_decision_overhead_b16 with the prior predictor,
# test_bench_decision_overhead_mlp_b16 with the committed testbed predictor), in one pytest-benchmark run pinned
# to two cores (taskset), torch on as many threads. Meant for an idle many-core host (e.g. the 16-core host of a
# lent GPU machine), where the pinned figure is a quiet one; docs/predictor.md ("Decision overhead") reads it.
# Usage, from the repository root:
#   OUT=/some/dir bash scripts/bench_decision_overhead.sh
# Environment: CORES (default 0,1), PYTHON (default .venv/bin/python, else python3), BUILD (1: build asd._C
# here first, CPU only; default: only when asd._C is missing or predates asd._C.mlp_proxy_dp).
# Writes into $OUT: cascade_overhead_mlp_cpu.json (pytest-benchmark JSON, extra_info holds the ratios),
# bench_decision_overhead.log (host, load before and after, the benchmark's output), build.log when it built.
source "$(dirname "$0")/gpu_env.sh"
CORES=${CORES:-0,1}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
LOG="$OUT/bench_decision_overhead.log"
NCORES=$(taskset -c "$CORES" nproc)
if [ -z "${BUILD:-}" ]; then
    "$PY" -c "import asd._C as c; assert hasattr(c, 'mlp_proxy_dp')" 2>/dev/null && BUILD=0 || BUILD=1
fi
if [ "$BUILD" = 1 ]; then  # CPU kernels only (-march=native: for this host's CPU)
    ASD_BUILD_CUDA=off "$PY" setup.py -q build_ext --inplace --build-temp /tmp/asd-build-cpu > "$OUT/build.log" 2>&1 \
        || { echo "build failed (see $OUT/build.log)"; exit 1; }
fi
{
    echo "start $(date -u +%Y-%m-%dT%H:%M:%SZ), revision ${ASD_GIT_REVISION:-unknown}"
    lscpu | grep -i "model name"
    echo "host cores: $(nproc --all); pinned to cores $CORES ($NCORES), OMP_NUM_THREADS=$NCORES"
    echo "load before: $(uptime)"
} > "$LOG"
OMP_NUM_THREADS=$NCORES taskset -c "$CORES" "$PY" -m pytest benchmarks/test_bench_cascade.py -k decision_overhead \
    --benchmark-only -q -p no:cacheprovider --benchmark-json="$OUT/cascade_overhead_mlp_cpu.json" >> "$LOG" 2>&1
RC=$?
echo "load after: $(uptime); pytest rc $RC" >> "$LOG"
tail -25 "$LOG"
exit $RC
