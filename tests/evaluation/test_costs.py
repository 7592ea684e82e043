"""The testbed's measured cost table is what `asd testbed costs` measured, and prices transitions."""
import json

import numpy as np

from asd.core.costs import transition_costs
from asd.costs_io import load_cost_model
from asd.evaluation.costs import from_testbed_costs

from .helpers import ROOT


def test_committed_table_is_the_measured_record():
    rec = json.loads((ROOT / "results/benchmarks/testbed_cpu_costs.json").read_text())
    built = from_testbed_costs(rec)
    committed = load_cost_model(ROOT / "configs/costs/testbed-cpu.json")
    assert [s.name for s in committed.stages] == ["s0", "s1", "s2", "s3"] and committed.batch_size == 16
    for a, b in zip(built.stages, committed.stages):
        assert a == b
    s3 = rec["costs"]["stages"]["s3"]
    assert committed.stages[3].step_s(16) == s3["decode_step_s"]
    assert committed.stages[3].prefill(256) == np.float64(s3["prefill_s"])
    # priced in batch shares: jumping from s0 to s3 with everything accepted costs s3's prefill over prompt + draft,
    # more than half of s3 answering alone (its 20 decode steps are shared by the batch of 16, the prefill is not)
    c = transition_costs(np.array([100]), np.array([[20, 20, 20, 20]]), np.full((1, 4, 4), 1.0), committed)
    alone = committed.latency_s(3, 100, 20)
    assert np.isclose(alone, committed.stages[3].prefill(100) + 20 * s3["decode_step_s"] / 16)
    assert np.isclose(c[0, 0, 3], committed.stages[3].prefill(120) / alone) and 0.5 < c[0, 0, 3] < 1


def test_unshared_steps_table_prices_as_the_per_input_formula():
    # configs/costs/testbed-cpu-unshared-steps.json: the committed table with decode steps x 16, under the batch-share
    # prices, gives every move exactly the per-input price prefill(p) + n·step(16) of the earlier pricing
    base = load_cost_model(ROOT / "configs/costs/testbed-cpu.json")
    derived = load_cost_model(ROOT / "configs/costs/testbed-cpu-unshared-steps.json")
    assert derived.batch_size == base.batch_size == 16
    assert [s.prefill for s in derived.stages] == [s.prefill for s in base.stages]
    rng = np.random.default_rng()
    B, K = 64, 4
    p, y, a = rng.integers(20, 300, B), rng.integers(1, 33, (B, K)), rng.random((B, K, K))
    got = transition_costs(p, y, a, derived)
    norm = base.stages[3].prefill(p) + y[:, 0] * base.stages[3].step_s(16)
    for j in range(K):
        for m in range(j + 1, K):
            st = base.stages[m]
            want = (st.prefill(p + y[:, j]) + (1 - a[:, j, m]) * y[:, j] * st.step_s(16)) / norm
            np.testing.assert_allclose(got[:, j, m], want, rtol=1e-12)
