"""token_stats on the CPU at N = 64 rows × V = 152,064 (Qwen2.5's vocabulary): the C++ kernel of
asd._C against the torch twin (log_softmax, entropy, topk, gather, argmax), both on the same
threads (torch.set_num_threads = OpenMP's thread count, 2 on the CI machine).

Goal: C++ ≥ 4× torch. Run:
    .venv/bin/python -m pytest benchmarks/test_bench_tokstats.py --benchmark-only \
        --benchmark-json=results/benchmarks/tokstats_cpu.json
Each C++ benchmark also times the torch twin right after itself (median of a few calls) and stores
the ratio in extra_info["speedup_vs_torch"], so that the ratio comes from the same minute of a
shared, noisy machine.
"""
import os

import pytest
import torch

from timing import median_seconds

from asd._ext import get_ext
from asd.tokstats import token_stats, token_stats_ref

N, V = 64, 152_064
EXT = get_ext()
THREADS = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, V, generator=g) * 4  # [N, V] logits, roughly the spread of a real LM's
    chosen = torch.randint(0, V, (N,), generator=g)  # [N] int64
    return x, chosen


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_bench_tokstats_torch(benchmark, inputs, dtype):
    torch.set_num_threads(THREADS)
    x, chosen = inputs
    x = x.to(DTYPES[dtype])
    benchmark.group = f"token_stats N={N} V={V} {dtype}"
    benchmark.extra_info.update(threads=THREADS, dtype=dtype, impl="torch twin")
    benchmark.pedantic(token_stats_ref, args=(x, chosen), rounds=10, warmup_rounds=1)


@pytest.mark.skipif(EXT is None, reason="asd._C is not built")
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_bench_tokstats_cpp(benchmark, inputs, dtype):
    torch.set_num_threads(THREADS)
    x, chosen = inputs
    x = x.to(DTYPES[dtype])
    benchmark.group = f"token_stats N={N} V={V} {dtype}"
    benchmark.extra_info.update(threads=THREADS, dtype=dtype, impl="asd._C")
    out = benchmark.pedantic(token_stats, args=(x, chosen), rounds=30, warmup_rounds=2)
    torch.testing.assert_close(out, token_stats_ref(x.double(), chosen), rtol=1e-5, atol=1e-6)
    t_cpp = median_seconds(lambda: token_stats(x, chosen), reps=15, warmup=1)
    t_ref = median_seconds(lambda: token_stats_ref(x, chosen), reps=5, warmup=1)
    ratio = t_ref / t_cpp
    benchmark.extra_info.update(
        median_cpp_ms=t_cpp * 1e3, median_torch_ms=t_ref * 1e3, speedup_vs_torch=ratio, goal=4.0,
        read_GBps=x.numel() * x.element_size() / t_cpp / 1e9,
    )
    print(f"\n{dtype}: C++ {t_cpp * 1e3:.2f} ms, torch {t_ref * 1e3:.2f} ms, speedup {ratio:.1f}x (goal 4x)")
