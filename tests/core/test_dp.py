"""The DP stopping rule: C++ kernel vs numpy spec, hand-solved cases, properties, bad input."""
import itertools
import math

import numpy as np
import pytest

from asd._ext import get_ext

from asd import _C  # the extension must be built (make build); its absence is a failure here
from asd.config_loader import ConfigError
from asd.run_config import load_section
from asd.core import dp
from asd.core.dp import STOP, PolicyConfig, route, route_cost, solve, solve_ref

INF = math.inf


def random_inputs(rng, B, S, K, inf_frac=0.1, r_dtype=np.float64, c_dtype=np.float64):
    r = rng.random((B, S, K)).astype(r_dtype)
    cost = (rng.random((B, K, K)) * 1.5).astype(c_dtype)
    cost[rng.random((B, K, K)) < inf_frac] = INF
    cost[:, np.tril(np.ones((K, K), bool))] = INF
    current = rng.integers(0, K, B)
    return r, cost, current


def brute_force(r, cost, current, lam, kappa):
    """min over all increasing routes from `current` to a stop, by enumeration (B small)."""
    B, S, K = r.shape
    lt = dp.risk_adjusted_loss(r, kappa)
    out = np.empty(B)
    for b in range(B):
        c0 = int(current[b])
        best = INF
        later = range(c0 + 1, K)
        for n in range(len(later) + 1):
            for hops in itertools.combinations(later, n):
                path = (c0, *hops)
                t = path[-1]
                stop = 0.0 if t == K - 1 else (INF if math.isinf(lam) else lam * lt[b, t])
                best = min(best, stop + sum(float(cost[b, a, z]) for a, z in zip(path, path[1:])))
        out[b] = best
    return out


def assert_same(a: dp.Plan, b: dp.Plan):
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.next, b.next)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-6)
    assert a.action.dtype == b.action.dtype == np.int64
    assert a.next.dtype == b.next.dtype == np.int64
    assert a.value.dtype == b.value.dtype == np.float64


# ----------------------------------------------------------------------------- C++ == numpy


@pytest.mark.parametrize("B,S,K", [(1, 1, 4), (7, 8, 4), (1000, 8, 4), (1000, 1, 4), (300, 3, 2),
                                   (300, 5, 3), (200, 4, 5), (200, 2, 7), (50, 1, 1), (0, 8, 4)])
@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0, 50.0, INF])
def test_cpp_matches_numpy(B, S, K, lam):
    rng = np.random.default_rng(hash((B, S, K)) % 2**32)
    r, cost, current = random_inputs(rng, B, S, K)
    for kappa in (0.0, 1.3):
        assert_same(solve(r, cost, current, lam, kappa), solve_ref(r, cost, current, lam, kappa))


@pytest.mark.parametrize("r_dtype,c_dtype", [(np.float32, np.float32), (np.float32, np.float64),
                                             (np.float64, np.float32)])
def test_cpp_matches_numpy_float32(r_dtype, c_dtype):
    rng = np.random.default_rng(5)
    r, cost, current = random_inputs(rng, 2000, 8, 4, r_dtype=r_dtype, c_dtype=c_dtype)
    for lam, kappa in [(1.0, 0.0), (3.0, 0.7), (INF, 0.0)]:
        assert_same(solve(r, cost, current, lam, kappa), solve_ref(r, cost, current, lam, kappa))


def test_cpp_bit_identical_to_numpy():
    # stronger than the contract (rtol 1e-6): same operations in the same order, no FMA contraction
    rng = np.random.default_rng(11)
    r, cost, current = random_inputs(rng, 5000, 8, 4)
    a, b = solve(r, cost, current, 1.7, 0.9), solve_ref(r, cost, current, 1.7, 0.9)
    assert np.array_equal(a.value, b.value)


def test_matches_brute_force_enumeration():
    rng = np.random.default_rng(2)
    r, cost, current = random_inputs(rng, 300, 3, 5, inf_frac=0.2)
    for lam, kappa in [(0.5, 0.0), (4.0, 0.5), (INF, 0.0)]:
        plan = solve(r, cost, current, lam, kappa)
        np.testing.assert_allclose(plan.value[np.arange(300), current], brute_force(r, cost, current, lam, kappa))


def test_out_buffers_written_in_place():
    rng = np.random.default_rng(3)
    r, cost, current = random_inputs(rng, 500, 4, 4)
    out = solve(r, cost, current, 1.0)
    ids = [id(out.action), id(out.value), id(out.next)]
    got = solve(r, cost, current, 7.0, 0.5, out=out)
    assert got is out and [id(got.action), id(got.value), id(got.next)] == ids
    assert_same(got, solve_ref(r, cost, current, 7.0, 0.5))
    with pytest.raises(ValueError, match="out value"):
        solve(r, cost, current, 1.0, out=dp.Plan(out.action, out.value[:, :3].copy(), out.next))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    r, cost, current = random_inputs(rng, 400, 8, 4)
    r_nc = np.asfortranarray(r)
    cost_nc = np.swapaxes(np.swapaxes(cost, 1, 2).copy(), 1, 2)  # same values, non-C layout
    assert not cost_nc.flags.c_contiguous
    assert_same(solve(r_nc, cost_nc, current.astype(np.int32), 2.0), solve_ref(r, cost, current, 2.0))


# ----------------------------------------------------------------------------- hand-solved cases


@pytest.mark.parametrize("fn", [solve, solve_ref])
def test_two_stages_by_hand(fn):
    r = np.array([[[0.7, 1.0]]])            # ℓ̃_0 = 0.3
    cost = np.array([[[INF, 0.2], [INF, INF]]])
    cur = np.array([0])
    p = fn(r, cost, cur, 1.0)               # stop 0.3 vs go 0.2 → go
    assert p.action.tolist() == [1] and p.next.tolist() == [[1, STOP]]
    np.testing.assert_allclose(p.value, [[0.2, 0.0]])
    p = fn(r, cost, cur, 0.5)               # stop 0.15 vs go 0.2 → stop
    assert p.action.tolist() == [STOP]
    np.testing.assert_allclose(p.value, [[0.15, 0.0]])
    # exact tie (binary fractions): STOP wins
    p = fn(np.array([[[0.5, 1.0]]]), np.array([[[INF, 0.5], [INF, INF]]]), cur, 1.0)
    assert p.action.tolist() == [STOP] and p.value[0, 0] == 0.5
    # at the last stage the action is always STOP and ℓ̃_{K−1} = 0 whatever r says
    p = fn(np.array([[[0.5, 0.25]]]), cost, np.array([1]), 3.0)
    assert p.action.tolist() == [STOP] and p.value[0, 1] == 0.0


@pytest.mark.parametrize("fn", [solve, solve_ref])
def test_three_stages_by_hand_with_skip(fn):
    # the worked example of solve_ref's docstring
    r = np.array([[[0.6, 0.8, 1.0]]])
    cost = np.array([[[INF, 0.3, 1.1], [INF, INF, 0.9], [INF, INF, INF]]])
    p = fn(r, cost, np.array([0]), 1.0)
    assert p.action.tolist() == [STOP] and p.next.tolist() == [[STOP, STOP, STOP]]
    np.testing.assert_allclose(p.value, [[0.4, 0.2, 0.0]])
    p = fn(r, cost, np.array([0]), 5.0)
    assert p.action.tolist() == [2] and p.next.tolist() == [[2, 2, STOP]]
    np.testing.assert_allclose(p.value, [[1.1, 0.9, 0.0]])
    # ties between jumps: the nearer stage wins (0.3 + 0.8 == 1.1 with c_{1→2} = 0.8)
    cost2 = cost.copy()
    cost2[0, 1, 2] = 0.75
    cost2[0, 0, 1] = 0.25
    cost2[0, 0, 2] = 1.0      # 0.25 + 0.75 == 1.0 exactly
    p = fn(r, cost2, np.array([0]), 5.0)
    assert p.next[0, 0] == 1


@pytest.mark.parametrize("fn", [solve, solve_ref])
def test_skip_when_intermediate_priced_out(fn):
    rng = np.random.default_rng(7)
    B, K = 200, 4
    r = rng.random((B, 4, K))
    cost = rng.random((B, K, K)) * 0.2
    cost[:, :, 1] = 1e3          # stage 1 is priced out ...
    cost[:, 0, 1] = INF          # ... or unavailable
    p = fn(r, cost, np.zeros(B, np.int64), INF)
    assert (p.next[:, 0] >= 2).all() and (route(p) == K - 1).all()
    p = fn(r, cost, np.zeros(B, np.int64), 10.0)
    assert not (p.next[:, 0] == 1).any()


# ----------------------------------------------------------------------------- properties


def test_value_non_increasing_as_lambda_decreases():
    rng = np.random.default_rng(8)
    r, cost, current = random_inputs(rng, 3000, 8, 4)
    lams = [INF, 100.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.1, 0.0]
    values = [solve(r, cost, current, lam, 0.5).value for lam in lams]
    for hi, lo in zip(values, values[1:]):
        assert (lo <= hi).all()
    assert (values[-1] == 0).all()  # λ = 0: stopping is free


def test_lambda_inf_never_stops_early_and_takes_cheapest_route():
    rng = np.random.default_rng(9)
    r, cost, current = random_inputs(rng, 2000, 8, 4, inf_frac=0.0)
    p = solve(r, cost, current, INF, 2.0)
    assert (route(p, current) == 3).all()
    assert (p.action[current < 3] != STOP).all()
    rows = np.arange(2000)
    np.testing.assert_allclose(route_cost(p, cost, current), p.value[rows, current])
    np.testing.assert_allclose(p.value[rows, current], brute_force(r, cost, current, INF, 0.0)[rows], rtol=1e-12)
    # r at 1.0 everywhere (ℓ̃ = 0): λ = inf still goes to the end (inf·0 is not nan)
    p = solve(np.ones_like(r), cost, current, INF)
    assert (route(p, current) == 3).all() and np.isfinite(p.value).all()


def test_kappa_escalates_uncertain_inputs():
    # same mean r_0 = 0.5 for both inputs; the second's draws disagree
    r = np.array([[[0.5, 1.0]] * 4, [[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]])
    cost = np.array([[[INF, 0.6], [INF, INF]]] * 2)
    cur = np.zeros(2, np.int64)
    assert solve(r, cost, cur, 1.0, 0.0).action.tolist() == [STOP, STOP]   # 0.5 < 0.6
    p = solve(r, cost, cur, 1.0, 0.5)                                       # ℓ̃ = 0.5 + 0.5·0.5 = 0.75
    assert p.action.tolist() == [STOP, 1]
    rng = np.random.default_rng(10)
    r, cost, current = random_inputs(rng, 1000, 8, 4)
    v = [solve(r, cost, current, 2.0, k).value for k in (0.0, 0.5, 2.0)]
    assert (v[0] <= v[1]).all() and (v[1] <= v[2]).all()


def test_route_helpers():
    p = dp.Plan(action=np.array([2]), value=np.zeros((1, 4)), next=np.array([[2, 3, 3, STOP]]))
    cost = np.full((1, 4, 4), INF)
    cost[0, 0, 2], cost[0, 2, 3] = 0.4, 0.5
    assert route(p).tolist() == [3] and route(p, 3).tolist() == [3]
    np.testing.assert_allclose(route_cost(p, cost), [0.9])


# ----------------------------------------------------------------------------- bad input


def _ok(B=3, S=2, K=4):
    rng = np.random.default_rng(0)
    r, cost, cur = random_inputs(rng, B, S, K)
    return r, cost, cur.astype(np.int64)


def _bad_cases():
    r, cost, cur = _ok()
    nan_cost = cost.copy()
    nan_cost[1, 0, 2] = np.nan
    neg_cost = cost.copy()
    neg_cost[2, 1, 3] = -0.1
    nan_r = r.copy()
    nan_r[0, 1, 2] = np.nan
    big_r = r.copy()
    big_r[0, 0, 0] = 1.5
    return {
        "r not 3-d": ((r[0], cost, cur, 1.0, 0.0), "r must have shape"),
        "K mismatch": ((r, cost[:, :3, :3], cur, 1.0, 0.0), "cost has K=3"),
        "B mismatch": ((r, cost[:2], cur, 1.0, 0.0), "cost has batch size 2"),
        "cost not square": ((r, cost[:, :, :3], cur, 1.0, 0.0), "cost must have shape"),
        "current shape": ((r, cost, cur[:2], 1.0, 0.0), "current must have shape"),
        "NaN cost": ((r, nan_cost, cur, 1.0, 0.0), "cost contains NaN"),
        "negative cost": ((r, neg_cost, cur, 1.0, 0.0), "cost must be >= 0"),
        "NaN r": ((nan_r, cost, cur, 1.0, 0.0), "r must hold probabilities"),
        "r > 1": ((big_r, cost, cur, 1.0, 0.0), "r must hold probabilities"),
        "negative lam": ((r, cost, cur, -1.0, 0.0), "lam must be >= 0"),
        "NaN lam": ((r, cost, cur, math.nan, 0.0), "lam must be >= 0"),
        "negative kappa": ((r, cost, cur, 1.0, -0.5), "kappa must be"),
        "inf kappa": ((r, cost, cur, 1.0, INF), "kappa must be"),
        "current too big": ((r, cost, np.array([0, 4, 1]), 1.0, 0.0), "current must hold stages"),
        "current negative": ((r, cost, np.array([0, -1, 1]), 1.0, 0.0), "current must hold stages"),
        "integer r": ((np.ones((3, 2, 4), np.int64), cost, cur, 1.0, 0.0), "r must be float32 or float64"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("fn", [solve, solve_ref], ids=["solve", "solve_ref"])
def test_bad_input_python(fn, case):
    args, msg = BAD[case]
    with pytest.raises(ValueError, match=msg):
        fn(*args)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_cpp_direct(case):
    args, msg = BAD[case]
    with pytest.raises(ValueError, match=msg):  # std::invalid_argument → ValueError
        _C.dp_solve(*args)


def test_cpp_direct_rejects_layout_and_dtype():
    r, cost, cur = _ok()
    with pytest.raises(ValueError, match="r must be C-contiguous"):
        _C.dp_solve(np.asfortranarray(r), cost, cur, 1.0, 0.0)
    with pytest.raises(ValueError, match="current must be int64"):
        _C.dp_solve(r, cost, cur.astype(np.int32), 1.0, 0.0)
    with pytest.raises(ValueError, match="out must be None or a tuple"):
        _C.dp_solve(r, cost, cur, 1.0, 0.0, [1, 2])


def test_entries_below_diagonal_are_ignored():
    r, cost, cur = _ok()
    junk = cost.copy()
    junk[:, np.tril(np.ones((4, 4), bool))] = np.nan  # never read
    assert_same(solve(r, junk, cur, 2.0), solve_ref(r, cost, cur, 2.0))


# ----------------------------------------------------------------------------- config


def test_policy_config_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("policy:\n  name: dp\n  lam: .inf\n  kappa: 0.5\n")
    cfg = load_section(p, "policy")
    assert isinstance(cfg, PolicyConfig) and math.isinf(cfg.lam) and cfg.kappa == 0.5
    for body, msg in [("lam: -1", "lam"), ("kappa: -0.1", "kappa"), ("name: greedy", "valid choices"),
                      ("tau: 2", "tau"), ("name: random", "histogram"), ("lamda: 1", "valid keys")]:
        p.write_text(f"policy:\n  {body}\n")
        with pytest.raises(ConfigError, match=msg):
            load_section(p, "policy")


def test_fallback_to_numpy_twin_without_extension(monkeypatch):
    # asd._ext.get_ext() returns None when _C failed to build: solve must then run solve_ref
    import asd._ext

    rng = np.random.default_rng(12)
    r, cost, current = random_inputs(rng, 300, 4, 4)
    want = solve(r, cost, current, 2.0, 0.5)
    monkeypatch.setattr(asd._ext, "get_ext", lambda: None)
    assert_same(solve(r, cost, current, 2.0, 0.5), want)
    out = dp.Plan(np.empty(300, np.int64), np.empty((300, 4)), np.empty((300, 4), np.int64))
    assert solve(r, cost, current, 2.0, 0.5, out=out) is out
    assert_same(out, want)
    with pytest.raises(ValueError, match="cost contains NaN"):
        solve(r, np.full_like(cost, np.nan), current, 1.0)


@pytest.mark.parametrize("S", [1, 3, 8])
@pytest.mark.parametrize("K", [3, 4, 5])
def test_cpp_bit_identical_fresh_inputs_all_paths(S, K):
    """Fresh random inputs every run through every compiled path (K = 4 has a vector path; S = 1 and 8 are
    compiled with S known; B above the threading threshold): float32/float64 r and cost, κ = 0 and > 0, λ = ∞."""
    if get_ext() is None or not hasattr(get_ext(), "dp_solve"):
        pytest.skip("asd._C not built")
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    for r_dtype, c_dtype in [(np.float64, np.float64), (np.float32, np.float64), (np.float32, np.float32)]:
        r, cost, current = random_inputs(rng, 9000, S, K, r_dtype=r_dtype, c_dtype=c_dtype)
        r[rng.random(r.shape) < 0.01] = 1.0      # exact ends of the range
        r[rng.random(r.shape) < 0.01] = 0.0
        for lam, kappa in [(0.7, 0.0), (3.0, 1.3), (INF, 0.0), (0.0, 0.5)]:
            a, b = solve(r, cost, current, lam, kappa), solve_ref(r, cost, current, lam, kappa)
            assert np.array_equal(a.value, b.value), (seed, r_dtype, c_dtype, lam, kappa)
            assert np.array_equal(a.next, b.next) and np.array_equal(a.action, b.action), seed


@pytest.mark.parametrize("bad", ["r_nan", "r_above", "r_below", "cost_nan", "cost_negative"])
def test_cpp_bad_contents_on_the_vector_path(bad):
    """K = 4, S = 8, B above the threading threshold: the first offending sample is named, as in numpy."""
    if get_ext() is None or not hasattr(get_ext(), "dp_solve"):
        pytest.skip("asd._C not built")
    rng = np.random.default_rng()
    r, cost, current = random_inputs(rng, 9000, 8, 4)
    i, j = sorted(rng.choice(9000, 2, replace=False))
    for b in (j, i):   # two offending samples: the smaller index must be reported
        if bad == "r_nan":
            r[b, 3, 1] = np.nan
        elif bad == "r_above":
            r[b, 0, 2] = 1.0 + 1e-12
        elif bad == "r_below":
            r[b, 7, 0] = -1e-300
        elif bad == "cost_nan":
            cost[b, 1, 3] = np.nan
        else:
            cost[b, 0, 1] = -0.5
    arg = "r" if bad.startswith("r") else "cost"
    with pytest.raises(ValueError, match=rf"{arg}.*\b{i}\b"):
        solve(r, cost, current, 1.0, 0.5)
    with pytest.raises(ValueError, match=arg):
        solve_ref(r, cost, current, 1.0, 0.5)


def test_cpp_vector_path_ignores_entries_on_and_below_the_diagonal():
    if get_ext() is None or not hasattr(get_ext(), "dp_solve"):
        pytest.skip("asd._C not built")
    rng = np.random.default_rng()
    r, cost, current = random_inputs(rng, 9000, 8, 4)
    low = np.tril(np.ones((4, 4), bool))
    cost[:, low] = np.where(rng.random((9000, low.sum())) < 0.5, np.nan, -1.0)
    assert_same(solve(r, cost, current, 1.3, 0.4), solve_ref(r, cost, current, 1.3, 0.4))
