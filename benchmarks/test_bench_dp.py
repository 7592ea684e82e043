"""The DP stopping rule: C++ kernel (asd._C.dp_solve) vs its numpy twin (solve_ref) vs a memcpy of its inputs.

Grid: B ∈ {1, 1e3, 1e5, 1e6}, K = 4, S ∈ {1, 8}; r and cost float64, κ = 0.5 (risk-adjusted:
the general case; the std over draws is computed), λ = 2; plus B = 1e6, S = 8 at κ = 0 with r in float64
and in float32 (the predictor's dtype; cost stays float64). Implementations per case:
- ``numpy``:   ``asd.core.dp.solve_ref`` (the specification, vectorised over B);
- ``cpp``:     ``asd.core.dp.solve`` → ``asd._C.dp_solve`` with fresh outputs;
- ``cpp_out``: the same writing into the arrays of a previous call (``out=``: no page zeroing);
- ``memcpy``:  ``np.copyto`` of r and cost into preallocated arrays: the floor for one pass over the inputs.
Goal at B = 1e6, S = 8: C++ ≥ 30× numpy and ≤ 2× memcpy.

The ``cpp`` benchmark of each case also times all four interleaved (median of a few rounds each, same
minute of a shared machine) and stores the ratios in ``extra_info``; benchmarks/conftest.py prints them
at the end and ``python benchmarks/ratios.py FILE.json`` prints them from a saved run:

    .venv/bin/python -m pytest benchmarks/test_bench_dp.py --benchmark-only \\
        --benchmark-json=results/benchmarks/dp.json
"""
import functools
import os
import statistics
import time

import numpy as np
import pytest

from asd._ext import get_ext
from asd.core import dp

K, LAM, KAPPA = 4, 2.0, 0.5
EXT = get_ext()
IMPLS = ("numpy", "cpp", "cpp_out", "memcpy")
CASES = [(B, S, KAPPA, "f64", impl) for B in (1, 1_000, 100_000, 1_000_000) for S in (1, 8) for impl in IMPLS]
# the headline case risk-neutral too (no std in either), and with r in float32 as a trained predictor emits it
CASES += [(1_000_000, 8, 0.0, r_dtype, impl) for r_dtype in ("f64", "f32") for impl in IMPLS]
CASES += [(1_000_000, 8, KAPPA, "f32", impl) for impl in IMPLS]
ROUNDS = {1: 2000, 1_000: 300, 100_000: 15, 1_000_000: 5}          # pedantic rounds per B
INTERLEAVED = {1: 301, 1_000: 101, 100_000: 9, 1_000_000: 5}        # rounds of the ratio measurement
NUMPY_CAP = {100_000: 5, 1_000_000: 3}                               # the twin is slow at large B


@functools.lru_cache(maxsize=1)
def inputs(B: int, S: int, r_dtype: str):
    rng = np.random.default_rng(B * 10 + S)
    r = rng.random((B, S, K), dtype=np.float32 if r_dtype == "f32" else np.float64)  # [B, S, K]
    cost = rng.random((B, K, K))                           # [B, K, K] float64
    cost[:, np.tril(np.ones((K, K), bool))] = np.inf
    current = rng.integers(0, K, B).astype(np.int64)       # [B]
    return r, cost, current


def _fns(B: int, S: int, kappa: float, r_dtype: str) -> dict:
    r, cost, current = inputs(B, S, r_dtype)
    out = dp.solve(r, cost, current, LAM, kappa)
    r2, c2 = np.empty_like(r), np.empty_like(cost)
    return {
        "numpy": lambda: dp.solve_ref(r, cost, current, LAM, kappa),
        "cpp": lambda: dp.solve(r, cost, current, LAM, kappa),
        "cpp_out": lambda: dp.solve(r, cost, current, LAM, kappa, out=out),
        "memcpy": lambda: (np.copyto(r2, r), np.copyto(c2, cost)),
    }


def _interleaved_medians(fns: dict, rounds: int, numpy_rounds: int) -> dict:
    times = {k: [] for k in fns}
    for i in range(rounds):
        for k, fn in fns.items():
            if k == "numpy" and i >= numpy_rounds:
                continue
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@pytest.mark.skipif(EXT is None or not hasattr(EXT, "dp_solve"), reason="asd._C (dp_solve) is not built")
@pytest.mark.parametrize("B,S,kappa,r_dtype,impl", CASES,
                         ids=[f"B={B}-S={S}-k={k}-r{d}-{i}" for B, S, k, d, i in CASES])
def test_bench_dp(benchmark, B, S, kappa, r_dtype, impl):
    fns = _fns(B, S, kappa, r_dtype)
    benchmark.group = f"dp B={B:g} S={S} K={K} κ={kappa} r:{r_dtype}"
    benchmark.extra_info.update(kernel="dp", impl=impl, B=B, S=S, K=K, lam=LAM, kappa=kappa,
                                r_dtype=r_dtype, cost_dtype="f64",
                                threads=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
                                input_MB=(B * S * K * (4 if r_dtype == "f32" else 8) + B * K * K * 8) / 1e6)
    rounds = NUMPY_CAP.get(B, ROUNDS[B]) if impl == "numpy" else ROUNDS[B]
    benchmark.pedantic(fns[impl], rounds=rounds, warmup_rounds=1, iterations=1)
    if impl == "cpp":
        plan, ref = fns["cpp"](), fns["numpy"]()
        np.testing.assert_array_equal(plan.action, ref.action)
        np.testing.assert_allclose(plan.value, ref.value, rtol=1e-6)
        med = _interleaved_medians(fns, INTERLEAVED[B], NUMPY_CAP.get(B, INTERLEAVED[B]))
        benchmark.extra_info.update(
            load_avg_1min=os.getloadavg()[0],  # the machine is shared: how busy it was
            median_ms={k: v * 1e3 for k, v in med.items()},
            ratio_numpy_over_cpp=med["numpy"] / med["cpp"],
            ratio_cpp_over_memcpy=med["cpp"] / med["memcpy"],
            ratio_cpp_out_over_memcpy=med["cpp_out"] / med["memcpy"],
        )
