"""The cells a grid config expands to: every policy, λ, τ, depth and ablation; waves; dependencies."""
import math
from collections import Counter

import pytest

from asd.config_loader import from_dict
from asd.evaluation.config import EvaluationConfig
from asd.evaluation.grid import expand
from asd.evaluation.run import label_of, policy_of

INF = math.inf


def _ev(**kw):
    return from_dict(EvaluationConfig, kw)


def test_default_grid_per_dataset_and_seed():
    ev = _ev(ablation_lambdas=[1.0, INF])
    cells, notes = expand(ev, K=4)
    assert notes == []
    per = Counter((c.dataset, c.seed) for c in cells)
    assert set(per) == {(f"testbed/{d}", s) for d in ("gsm8k", "mmlu", "humaneval", "truthfulqa") for s in range(5)}
    n = Counter(c.policy for c in cells if c.dataset == "testbed/gsm8k" and c.seed == 0 and c.ablation is None)
    # 6 finite λ + lossless; 4 single; depths 1..3; 3 τ each; speculative; random and oracle at every λ (7)
    assert n == {"dp": 6, "lossless": 1, "single": 4, "fixed_depth": 3, "threshold": 3, "confidence": 3,
                 "speculative": 1, "random": 7, "oracle": 7}
    abl = Counter(c.ablation for c in cells if c.dataset == "testbed/gsm8k" and c.seed == 0 and c.ablation)
    # κ, uniform costs, no skips at λ ∈ {1, ∞}; sampling: dp λ=1 and lossless + the final stage alone
    assert abl == {"kappa0": 2, "uniform_costs": 2, "no_skips": 2, "sampling_t0.7": 3}
    assert len({c.id for c in cells}) == len(cells)


def test_frontier_lambdas_add_dp_cells_only():
    base, _ = expand(_ev(), K=4)
    dense, _ = expand(_ev(frontier_lambdas=[0.02, 0.7]), K=4)
    extra = {c.id for c in dense} - {c.id for c in base}
    assert len(dense) - len(base) == 2 * 4 * 5 == len(extra)  # 2 λ × 4 datasets × 5 seeds
    got = [c for c in dense if c.id in extra]
    assert {c.policy for c in got} == {"dp"} and {c.lam for c in got} == {0.02, 0.7}
    assert "testbed-gsm8k--dp-lam0.7--seed0" in extra
    assert all(c.kappa == 0.5 and c.ablation is None for c in got)
    # random and oracle stay at lambdas
    assert Counter(c.policy for c in dense)["random"] == Counter(c.policy for c in base)["random"]


def test_starts_add_dp_cells_from_a_later_stage():
    base, _ = expand(_ev(frontier_lambdas=[0.7]), K=4)
    more, _ = expand(_ev(starts=[0, 2], frontier_lambdas=[0.7]), K=4)
    extra = [c for c in more if c.start]
    finite = 6 + 1  # the default lambdas' finite values and the frontier λ
    assert len(extra) == finite * 4 * 5  # × 4 datasets × 5 seeds
    assert {c.policy for c in extra} == {"dp"} and {c.start for c in extra} == {2}
    assert all(c.ablation is None and c.wave == 1 for c in extra)
    by = {c.id: c for c in more}
    c = by["testbed-gsm8k--dp-lam1-start2--seed0"]
    assert c.lam == 1.0 and c.kappa == 0.5
    assert policy_of(c).start == 2 and policy_of(by["testbed-gsm8k--dp-lam1--seed0"]).start == 0
    assert label_of(c) == "dp λ=1 from s2"
    # lossless, random, oracle and the ablations stay from stage 0
    assert Counter(c.policy for c in more if not c.start) == Counter(c.policy for c in base)
    with pytest.raises(ValueError, match=r"starts \[3\] out of range for K=4 stages; valid: 0..2"):
        expand(_ev(starts=[0, 3]), K=4)
    for bad, msg in (([2], "must hold 0"), ([0, 0], "distinct"), ([0, -1], "distinct stages >= 0"), ([], "at least")):
        with pytest.raises(ValueError, match=msg):
            _ev(starts=bad)


def test_cells_carry_their_parameters_and_dependencies():
    ev = _ev(datasets=["mmlu"], seeds=[3], lambdas=[0.5, INF], ablations=["no_skips", "kappa", "sampling"],
             ablation_lambdas=[0.5], kappa=0.5, ablation_kappa=0.0, source="benchmarks")
    cells, _ = expand(ev, K=3)
    by = {c.id: c for c in cells}
    dp = by["mmlu--dp-lam0.5--seed3"]
    assert dp.policy == "dp" and dp.lam == 0.5 and dp.kappa == 0.5 and dp.wave == 1
    assert by["mmlu--lossless--seed3"].lam == INF
    r = by["mmlu--random-lam0.5--seed3"]
    assert r.hist_from == dp.id and r.wave == 2
    assert by["mmlu--random-laminf--seed3"].hist_from == "mmlu--lossless--seed3"
    o = by["mmlu--oracle-lam0.5--seed3"]
    assert o.outcome_from == tuple(f"mmlu--single-s{k}--seed3" for k in range(3)) and o.upper_bound and o.wave == 2
    assert by["mmlu--dp-lam0.5--seed3--no_skips"].skips is False
    assert by["mmlu--dp-lam0.5--seed3--kappa0"].kappa == 0.0
    s = by["mmlu--dp-lam0.5--seed3--sampling_t0.7"]
    assert s.temperature == 0.7 and by["mmlu--single-s2--seed3--sampling_t0.7"].temperature == 0.7
    assert by["mmlu--lossless--seed3--sampling_t0.7"].lam == INF
    assert by["mmlu--fixed_depth-d2--seed3"].stage == 2 and by["mmlu--threshold-tau0.7--seed3"].tau == 0.7


def test_replay_grid_leaves_sampling_out_and_needs_no_outcome_cells():
    ev = _ev(datasets=["gsm8k"], seeds=[0], ablations=["sampling", "no_skips"])
    cells, notes = expand(ev, K=4, mode="replay")
    assert not any(c.ablation and c.ablation.startswith("sampling") for c in cells)
    assert notes and "sampling" in notes[0]
    assert all(c.wave == 1 for c in cells if c.policy == "oracle")


def test_grid_refuses_impossible_combinations():
    with pytest.raises(ValueError, match="fixed_depths"):
        expand(_ev(fixed_depths=[4]), K=4)
    with pytest.raises(ValueError, match="add 'single' to policies"):
        expand(_ev(policies=["dp", "oracle"]), K=4)
    cells, _ = expand(_ev(policies=["lossless"], lambdas=[1.0], ablations=[]), K=2)
    assert [c.policy for c in cells if c.seed == 0 and c.dataset == "testbed/gsm8k"] == ["lossless"]
