"""What tracking costs a run: the resource sampler's own CPU time, and the slowdown of a fixed workload.

Two measurements on the same fixed workload (``WORK_S`` seconds of numpy on one core):

- the sampler's CPU time as a fraction of the run's wall time (``sampler.overhead_s / wall_s``, measured by
  the sampler itself with ``time.thread_time``) at the default interval (1 s) and 10× denser (0.1 s);
  goal < 1 % at the default interval;
- the workload's wall time with and without a sampler at 0.1 s, interleaved rounds, median ratio (noisy on
  a loaded machine: the per-thread CPU time above is the figure that does not depend on the load).

The tracker's fixed cost per run (environment and package list, git diff, first record) is reported apart:
it does not grow with the run. Results: results/benchmarks/tracking.json.

    .venv/bin/python -m pytest benchmarks/test_bench_tracking.py --benchmark-only \
        --benchmark-json=results/benchmarks/tracking.json
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from asd.resources import ResourceSampler
from asd.tracking import Tracker

WORK_S = 3.0  # seconds of CPU per workload call
ROUNDS = 3


def _work(seconds: float = WORK_S) -> None:
    """A fixed amount of CPU work: matrix products until ``seconds`` of this process's CPU time are spent."""
    a = np.random.default_rng(0).random((256, 256))
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        a = (a @ a) / 256.0


@pytest.mark.parametrize("interval_s", [1.0, 0.1])
def test_sampler_overhead_fraction(benchmark, interval_s):
    fractions = []

    def run():
        s = ResourceSampler(interval_s=interval_s).start()
        _work()
        r = s.stop()
        fractions.append(r["sampler"]["overhead_s"] / r["wall_s"])

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["interval_s"] = interval_s
    benchmark.extra_info["overhead_fraction_median"] = statistics.median(fractions)
    benchmark.extra_info["overhead_fraction_max"] = max(fractions)
    if interval_s == 1.0:
        assert max(fractions) < 0.01, fractions


def test_workload_slowdown_with_dense_sampling(benchmark):
    plain, sampled = [], []

    def run():
        for with_sampler in (False, True):  # interleaved: both see the same machine load
            s = ResourceSampler(interval_s=0.1).start() if with_sampler else None
            t0 = time.perf_counter()
            _work(1.0)
            (sampled if with_sampler else plain).append(time.perf_counter() - t0)
            if s is not None:
                s.stop()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["median_plain_s"] = statistics.median(plain)
    benchmark.extra_info["median_sampled_s"] = statistics.median(sampled)
    benchmark.extra_info["ratio_sampled_over_plain"] = statistics.median(sampled) / statistics.median(plain)


def test_tracker_fixed_cost(benchmark, tmp_path):
    """Start + finish of a whole tracker around nothing: environment, packages, git diff, two record writes."""
    n = [0]

    def run():
        n[0] += 1
        with Tracker(f"fixed-{n[0]}", tmp_path, interval_s=1.0):
            pass

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
