"""Cost model: linear fits, c_{j→m} on hand numbers, JSON round trip with provenance (asd.costs_io)."""
import json

import numpy as np
import pytest

from asd.core.costs import SCHEMA_VERSION, CostModel, LinearFit, StageCost, fit_linear, transition_costs
from asd.costs_io import load_cost_model, save_cost_model

INF = np.inf


def two_stage_model():
    # stage 1: prefill 1 ms/token + 0, 10 ms/step at any batch, no overhead (the docstring example)
    s0 = StageCost("small", LinearFit(0.0002, 0.001), LinearFit(0.0, 0.002), overhead_s=0.0)
    s1 = StageCost("big", LinearFit(0.001, 0.0), LinearFit(0.0, 0.010), overhead_s=0.0)
    return CostModel(stages=(s0, s1), batch_size=1)


def test_fit_linear_exact_and_noisy():
    assert fit_linear([1, 2, 3], [3, 5, 7]) == pytest.approx((2.0, 1.0, 0.0))
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = 0.5 * x + 2 + np.array([0.1, -0.1, -0.1, 0.1])
    slope, icpt, std = fit_linear(x, y)
    assert slope == pytest.approx(0.5) and icpt == pytest.approx(2.0)
    assert std == pytest.approx(np.sqrt(4 * 0.01 / 2))          # Σres² / (n − 2)
    assert fit_linear([1, 5], [2, 10])[2] == 0.0                 # two points: no spread
    f = LinearFit.fit(x, y)
    assert f.n == 4 and f(10.0) == pytest.approx(7.0)
    for bad_x, bad_y, msg in [([1, 1, 1], [1, 2, 3], "2 distinct"), ([1], [1], "2 distinct"),
                              ([1, 2], [1, 2, 3], "same length"), ([1, np.nan], [1, 2], "finite")]:
        with pytest.raises(ValueError, match=msg):
            fit_linear(bad_x, bad_y)


def test_transition_cost_hand_numbers():
    m = two_stage_model()
    cost = transition_costs(np.array([100]), np.array([[50, 50]]), np.array([[[0, 0.8], [0, 0]]]), m)
    # numerator 0.150 + 0.2·50·0.010 = 0.25 s; L_1 = 0.100 + 50·0.010 = 0.6 s
    assert cost.shape == (1, 2, 2) and cost.dtype == np.float64
    assert cost[0, 0, 1] == pytest.approx(0.25 / 0.6)
    assert np.isinf(cost[0, 0, 0]) and np.isinf(cost[0, 1, 0]) and np.isinf(cost[0, 1, 1])
    # everything accepted: only the verify prefill remains; nothing accepted: prefill + full redo
    c_all = transition_costs(np.array([100]), np.array([[50, 50]]), np.ones((1, 2, 2)), m)
    c_none = transition_costs(np.array([100]), np.array([[50, 50]]), np.zeros((1, 2, 2)), m)
    assert c_all[0, 0, 1] == pytest.approx(0.15 / 0.6) and c_none[0, 0, 1] == pytest.approx(0.65 / 0.6)
    assert m.relative_latency(0, 100, 50) == pytest.approx((0.02 + 0.001 + 0.1) / 0.6)


def test_transition_costs_batch_size_overhead_and_four_stages():
    # every price is an input's share of a batched call of b = 8 inputs like it: prefill over 8 prompts' tokens
    # (+ intercept and overhead once per call), decode steps at batch 8 shared by the 8 (docs/dp.md, "Costs")
    st = [StageCost(f"s{k}", LinearFit(1e-4 * (k + 1), 0.01), LinearFit(1e-4, 0.01 * (k + 1)), 0.002)
          for k in range(4)]
    m = CostModel(stages=tuple(st), batch_size=8)
    B = 5
    rng = np.random.default_rng(0)
    p = rng.integers(10, 500, B)
    y = rng.integers(1, 300, (B, 4))
    a = rng.random((B, 4, 4))
    c = transition_costs(p, y, a, m)
    for b in range(B):
        norm = (1e-4 * 4 * 8 * p[b] + 0.01 + y[b, 0] * (1e-4 * 8 + 0.04) + 0.002) / 8
        assert m.latency_s(3, p[b], y[b, 0]) == pytest.approx(norm)
        for j in range(4):
            for k in range(4):
                if k <= j:
                    assert np.isinf(c[b, j, k])
                    continue
                step = 1e-4 * 8 + 0.01 * (k + 1)
                num = (1e-4 * (k + 1) * 8 * (p[b] + y[b, j]) + 0.01 + (1 - a[b, j, k]) * y[b, j] * step + 0.002) / 8
                assert c[b, j, k] == pytest.approx(num / norm)
    # a bigger stage never costs less to reach from the same draft, all else equal
    c_same = transition_costs(p, y, np.full((B, 4, 4), 0.5), m)
    assert (np.diff(c_same[:, 0, 1:], axis=1) > 0).all()


def test_batch_share_weighs_verification_against_shared_decode_steps():
    # the docstring's example at batch 4: the verify pass weighs as much per input, the decode steps 4x less
    s0, s1 = two_stage_model().stages
    m4 = CostModel(stages=(s0, s1), batch_size=4)
    acc = np.array([[[0, 0.8], [0, 0]]])
    assert transition_costs(np.array([100]), np.array([[50, 50]]), acc, m4)[0, 0, 1] == pytest.approx(0.7 / 0.9)
    assert m4.latency_s(1, 100, 50) == pytest.approx((0.4 + 0.5) / 4)
    # at batch 1 the share is the call itself: the same numbers as the batch-1 formula, bit for bit
    m1 = two_stage_model()
    p, y = np.array([7, 100, 333]), np.array([[1, 1], [50, 50], [12, 12]])
    secs = s1.prefill(p + y[:, 0]) + (1.0 - 0.8) * y[:, 0] * s1.step_s(1) + s1.overhead_s
    norm = s1.prefill(p) + y[:, 0] * s1.step_s(1) + s1.overhead_s
    got = transition_costs(p, y, np.broadcast_to(acc, (3, 2, 2)), m1)[:, 0, 1]
    assert np.array_equal(got, secs / norm)


def test_latency_is_the_analysis_price_of_a_batched_call_per_input():
    # asd.analysis.calls prices a recorded call of B members: prefill over B x (longest input) tokens, then its
    # steps at batch B, overhead once; the DP's L_m is that call's seconds per member for B = batch_size
    from asd.analysis.calls import GENERATE, Calls, price_calls

    rng = np.random.default_rng(1)
    st = tuple(StageCost(f"s{k}", LinearFit(rng.uniform(1e-5, 1e-3), rng.uniform(0, 0.01)),
                         LinearFit(rng.uniform(0, 1e-3), rng.uniform(1e-3, 0.02)), rng.uniform(0, 0.003))
               for k in range(3))
    for b in (1, 3, 16):
        m = CostModel(stages=st, batch_size=b)
        n = 9
        p, steps = rng.integers(5, 400, n), rng.integers(1, 64, n)
        calls = Calls.from_columns(
            {"batch": np.arange(n), "stage": np.arange(n) % 3, "kind": np.full(n, GENERATE), "size": np.full(n, b),
             "in_tokens": p, "steps": steps, "measured_s": np.ones(n)},
            member=np.zeros((n, 3), np.int64),
        )
        secs, _ = price_calls(calls, m)
        want = np.array([m.latency_s(int(k), int(pp), int(s)) for k, pp, s in zip(np.arange(n) % 3, p, steps)])
        assert secs / b == pytest.approx(want, rel=1e-12)


def test_transition_costs_bad_input():
    m = two_stage_model()
    p, y, a = np.array([10, 20]), np.array([[5, 5], [6, 6]]), np.full((2, 2, 2), 0.5)
    cases = [((p[:, None], y, a), "prompt_len must have shape"),
             ((p, y[:, :1], a), "draft_len must have shape"),
             ((p, y, a[:, :1]), "accept_mean must have shape"),
             ((p, -y, a), "must be >= 0"),
             ((p, y, np.where(a > 0, np.nan, a)), "accept_mean must be in"),
             ((np.array([0, 0]), np.array([[0, 0], [0, 0]]),
               a), "latency must be > 0")]
    m0 = CostModel(stages=(StageCost("a", LinearFit(0, 0), LinearFit(0, 0)),
                           StageCost("b", LinearFit(0, 0), LinearFit(0, 0))))
    for i, (args, msg) in enumerate(cases):
        with pytest.raises(ValueError, match=msg):
            transition_costs(*args, m0 if i == len(cases) - 1 else m)


def test_dict_round_trip_and_strictness():
    m = CostModel(stages=two_stage_model().stages, batch_size=4, provenance={"hardware": "test", "n": 3})
    d = m.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION
    assert CostModel.from_dict(json.loads(json.dumps(d))) == m
    with pytest.raises(ValueError, match="schema_version"):
        CostModel.from_dict({**d, "schema_version": SCHEMA_VERSION + 1})
    bad = json.loads(json.dumps(d))
    bad["stages"][0]["prefil"] = bad["stages"][0].pop("prefill")
    with pytest.raises(ValueError, match="prefil"):
        CostModel.from_dict(bad, source="x.json")
    with pytest.raises(ValueError, match="overhead_s"):
        StageCost("x", LinearFit(0, 0), LinearFit(0, 0), overhead_s=-1.0)


def test_file_round_trip_with_provenance(tmp_path):
    m = two_stage_model()
    path = save_cost_model(m, tmp_path / "sub" / "costs.json", hardware="2-core test box")
    assert not list(path.parent.glob("*.tmp*"))
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["provenance"]["hardware"] == "2-core test box" and "git_revision" in raw["provenance"]
    back = load_cost_model(path)
    assert back.stages == m.stages and back.batch_size == m.batch_size
    assert back.provenance["environment"]["numpy"] == np.__version__
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_cost_model(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_cost_model(tmp_path / "missing.json")


def test_recorded_move_prices_the_check_and_the_unaccepted_suffix():
    from asd.core.costs import recorded_move_s

    # all, half and none of y_j accepted; an empty draft counts as one token (nothing accepted)
    got = recorded_move_s([5.0, 6.0, 7.0, 1.0], [10.0, 10.0, 10.0, 10.0], [8, 4, 0, 0], [8, 8, 8, 0])
    np.testing.assert_allclose(got, [5.0, 11.0, 17.0, 11.0])
