"""Baseline policies: routes by hand, the random histogram, the oracle, DP optimality against all of them."""
import math

import numpy as np
import pytest

from asd.core import policies as P
from asd.core.dp import STOP, PolicyConfig, route, solve

INF = math.inf


def inputs(rng, B=500, S=4, K=4):
    r = rng.random((B, S, K))
    cost = rng.random((B, K, K))
    cost[:, np.tril(np.ones((K, K), bool))] = INF
    return r, cost, rng.integers(0, K, B)


def test_single_fixed_speculative_routes():
    cur = np.array([0, 1, 3])
    p = P.single_model(cur, 4, 2)
    assert p.next.tolist() == [[2, 2, STOP, STOP]] * 3 and p.action.tolist() == [2, 2, STOP]
    assert np.isnan(p.value).all()
    p = P.fixed_depth(cur, 4, 2)
    assert p.next.tolist() == [[1, 2, STOP, STOP]] * 3 and p.action.tolist() == [1, 2, STOP]
    p = P.speculative(cur, 4)
    assert p.next.tolist() == [[3, 3, 3, STOP]] * 3 and route(p, cur).tolist() == [3, 3, 3]
    assert P.single_model(cur, 4, -1).next.tolist() == P.speculative(cur, 4).next.tolist()
    with pytest.raises(ValueError, match="stage must be in 0..3"):
        P.single_model(cur, 4, 4)
    with pytest.raises(ValueError, match="current must hold stages"):
        P.fixed_depth(np.array([5]), 4, 1)


def test_threshold_by_hand():
    r = np.array([[0.95, 0.5, 0.99, 1.0],     # stops at 0
                  [0.5, 0.85, 0.2, 1.0],      # 0 → 1, stops at 1
                  [0.1, 0.2, 0.3, 1.0]])      # walks to the end
    p = P.threshold(r, np.zeros(3, np.int64), 0.8)
    assert route(p).tolist() == [0, 1, 3]
    assert p.next[2].tolist() == [1, 2, 3, STOP]
    # draws are averaged: mean 0.85 > 0.8
    p = P.threshold(np.array([[[0.9, 1.0], [0.8, 1.0]]]), np.array([0]), 0.8)
    assert p.action.tolist() == [STOP]
    with pytest.raises(ValueError, match="tau"):
        P.threshold(r, np.zeros(3, np.int64), 1.5)


def test_random_follows_histogram_and_seed():
    h = np.array([0.5, 0.1, 0.0, 0.4])
    cur = np.zeros(40_000, np.int64)
    p = P.random_stop(cur, h, np.random.default_rng(1))
    freq = P.stage_histogram(route(p), 4)
    np.testing.assert_allclose(freq, h, atol=0.01)
    assert freq[2] == 0
    again = P.random_stop(cur, h, np.random.default_rng(1))
    np.testing.assert_array_equal(p.next, again.next)
    # conditioned on t >= current; a route jumps straight to t
    cur = np.array([1, 2, 3] * 1000)
    p = P.random_stop(cur, h, np.random.default_rng(2))
    t = route(p, cur)
    assert (t >= cur).all()
    assert set(t[cur == 2].tolist()) == {3}           # stage 2 has weight 0
    assert ((p.action == STOP) | (p.action == t)).all()
    assert np.isclose((t[cur == 1] == 1).mean(), 0.2, atol=0.05)  # 0.1 / (0.1 + 0.4)
    # nothing left with weight: stop where you are
    p = P.random_stop(np.array([2, 3]), np.array([1.0, 0, 0, 0]), np.random.default_rng(0))
    assert p.action.tolist() == [STOP, STOP]


def test_oracle_is_the_dp_on_outcomes():
    # outcome: stage 1 is the first to match the final output
    outcome = np.array([[0, 1, 1, 1]], bool)
    cost = np.full((1, 4, 4), INF)
    cost[0, 0, 1], cost[0, 0, 3], cost[0, 1, 2], cost[0, 1, 3], cost[0, 2, 3], cost[0, 0, 2] = .3, .5, .2, .4, .2, .4
    p = P.oracle(outcome, cost, np.array([0]), 1.0)
    assert p.next[0, 0] == 1 and route(p).tolist() == [1]     # cheapest route to a correct stage
    np.testing.assert_allclose(p.value[0, 0], 0.3)
    p = P.oracle(outcome, cost, np.array([0]), 0.2)           # loss 0.2 < 0.3: accept the wrong answer
    assert p.action.tolist() == [STOP]


def test_dp_value_never_worse_than_any_baseline():
    rng = np.random.default_rng(3)
    r, cost, cur = inputs(rng)
    K = 4
    for lam, kappa in [(0.5, 0.0), (3.0, 0.5), (INF, 0.0)]:
        best = solve(r, cost, cur, lam, kappa)
        np.testing.assert_allclose(P.with_values(best, r, cost, lam, kappa).value, best.value)
        hist = P.stage_histogram(route(best, cur), K) + 0.01
        for plan in [P.single_model(cur, K, 2), P.fixed_depth(cur, K, 3), P.speculative(cur, K),
                     P.threshold(r, cur, 0.7), P.random_stop(cur, hist, np.random.default_rng(0)),
                     P.oracle(rng.random((500, K)) < 0.5, cost, cur, 1.0)]:
            v = P.with_values(plan, r, cost, lam, kappa).value
            assert (best.value <= v + 1e-12).all()
        if math.isinf(lam):  # any route that stops early is worth inf
            v = P.with_values(P.fixed_depth(cur, K, 1), r, cost, lam).value
            assert np.isinf(v[:, :3]).all() and (v[:, 3] == 0).all()  # it stops at 1 (and at 2)


def test_with_values_by_hand():
    r = np.array([[[0.6, 0.8, 1.0]]])
    cost = np.array([[[INF, 0.3, 1.1], [INF, INF, 0.9], [INF, INF, INF]]])
    p = P.fixed_depth(np.array([0]), 3, 1)        # 0 → 1, stop: 0.3 + λ·0.2
    v = P.with_values(p, r, cost, 2.0).value
    np.testing.assert_allclose(v, [[0.3 + 0.4, 0.4, 0.0]])


def test_decide_dispatch_and_missing_inputs():
    rng = np.random.default_rng(4)
    r, cost, cur = inputs(rng, B=50)
    assert np.array_equal(P.decide(PolicyConfig(lam=2.0), cur, 4, r=r, cost=cost).next,
                          solve(r, cost, cur, 2.0).next)
    assert np.array_equal(P.decide(PolicyConfig(name="fixed_depth", stage=2), cur, 4).next,
                          P.fixed_depth(cur, 4, 2).next)
    rnd = PolicyConfig(name="random", histogram=[0.2, 0.3, 0.1, 0.4], seed=5)
    assert np.array_equal(P.decide(rnd, cur, 4).next, P.decide(rnd, cur, 4).next)
    with pytest.raises(ValueError, match="needs outcome"):
        P.decide(PolicyConfig(name="oracle"), cur, 4, cost=cost)
    with pytest.raises(ValueError, match="needs r"):
        P.decide(PolicyConfig(name="threshold"), cur, 4)
