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
    # priced: jumping from s0 to s3 with everything accepted costs one prefill of s3, a small share of s3 alone
    c = transition_costs(np.array([100]), np.array([[20, 20, 20, 20]]), np.full((1, 4, 4), 1.0), committed)
    alone = committed.latency_s(3, 100, 20)
    assert np.isclose(c[0, 0, 3], committed.stages[3].prefill(120) / alone) and c[0, 0, 3] < 0.2
