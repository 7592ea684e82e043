"""The "no skips" ablation: forbid_skips masks jumps over a stage; the compiled DP and its twin stay bit-identical."""
import math

import numpy as np
import pytest

from asd.core import policies as P
from asd.core.decision import Decider, decide_proxy_dp_ref
from asd.core.dp import STOP, PolicyConfig, forbid_skips, route, solve, solve_ref
from asd.core.predictor import PriorPredictor
from asd.core.routing import proxy_costs_ref


def _inputs(rng, B, S, K, dtype):
    r = rng.random((B, S, K)).astype(dtype)
    cost = rng.random((B, K, K)).astype(dtype) * 0.6
    cost[:, np.tril(np.ones((K, K), bool))] = np.inf
    return r, cost, rng.integers(0, K, B)


def test_forbid_skips_masks_exactly_the_jumps():
    cost = np.arange(2 * 16, dtype=np.float32).reshape(2, 4, 4)
    out = forbid_skips(cost)
    assert out.dtype == np.float32 and out is not cost and cost[0, 0, 2] == 2  # a copy; the input is untouched
    j, m = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    assert np.isinf(out[:, m > j + 1]).all()
    np.testing.assert_array_equal(out[:, m <= j + 1], cost[:, m <= j + 1])
    with pytest.raises(ValueError, match=r"\[B, K, K\]"):
        forbid_skips(np.zeros((4, 4)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_skips_compiled_and_twin_bit_identical_and_adjacent(seed, dtype):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 7))
    r, cost, cur = _inputs(rng, 3000, int(rng.integers(1, 5)), K, dtype)
    masked = forbid_skips(cost)
    for lam in (0.0, 0.3, 2.0, 50.0, math.inf):
        kappa = float(rng.random())
        a, b = solve(r, masked, cur, lam, kappa), solve_ref(r, masked, cur, lam, kappa)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.next, b.next)
        np.testing.assert_array_equal(a.value, b.value)
        j = np.arange(K)[None, :]
        assert np.all((a.next == STOP) | (a.next == j + 1))  # adjacent moves only
        free = solve_ref(r, cost, cur, lam, kappa)
        assert np.all(a.value >= free.value)  # fewer routes: never a better value
        if math.isinf(lam):
            assert (route(a, 0) == K - 1).all()


def test_decide_and_decider_apply_the_mask_for_dp_and_oracle():
    rng = np.random.default_rng(7)
    B, K = 400, 4
    r, cost, cur = _inputs(rng, B, 2, K, np.float64)
    plan = P.decide(PolicyConfig(name="dp", lam=5.0, skips=False), cur, K, r=r, cost=cost)
    ref = solve_ref(r, forbid_skips(cost), cur, 5.0)
    np.testing.assert_array_equal(plan.next, ref.next)
    oc = rng.random((B, K)) < 0.5
    plan = P.decide(PolicyConfig(name="oracle", lam=5.0, skips=False), cur, K, cost=cost, outcome=oc)
    assert np.all((plan.next == STOP) | (plan.next == np.arange(K)[None, :] + 1))
    # the cascade's Decider on the proxy costs: skips=False leaves the fused kernel for proxy costs → mask → DP
    N = 50
    prompt_len = rng.integers(5, 200, N)
    responses = [np.zeros(int(n), np.int64) for n in rng.integers(1, 40, N)]
    sizes = np.array([1.0, 4.0, 10.0, 60.0])
    pred = PriorPredictor(r_prior=(0.3, 0.5, 0.8, 1.0))
    live = np.arange(N)
    cur = np.zeros(N, np.int64)
    rr, acc = pred.predict(np.zeros((N, 1)), cur, K)
    for lam in (1.0, 10.0, math.inf):
        got = Decider(PolicyConfig(lam=lam, skips=False), K, sizes, pred).decide(
            np.zeros((N, K, 1), np.float32), prompt_len, responses, live, cur, live, np.full((N, K, K), np.nan, np.float32)
        )
        c = proxy_costs_ref(prompt_len, np.array([len(x) for x in responses]), acc, sizes)
        want = solve_ref(rr, forbid_skips(c), cur, lam)
        np.testing.assert_array_equal(got.next, want.next)
        np.testing.assert_array_equal(got.value, want.value)
        free = decide_proxy_dp_ref(prompt_len, responses, acc, sizes, rr, cur, lam)
        assert np.all(got.value >= free.value)
