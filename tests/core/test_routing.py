"""Routing helpers: the cost proxy's hand value and shape, stage resolution, which policies re-plan."""
import math

import numpy as np
import pytest

from asd.core.dp import PolicyConfig
from asd.core.routing import REPLAN, first_stage, next_move, proxy_costs, proxy_costs_ref, resolve_stage, split_calls


def test_proxy_costs_hand_value():
    # K = 2, sizes 1 and 10; P = 100, L = 50, â = 0.8, ρ = 0.05:
    # c_{0→1} = (10/10)·(0.05·150 + 0.2·50) / (0.05·100 + 50) = 17.5 / 55
    c = proxy_costs(np.array([100]), np.array([50]), np.full((1, 2, 2), 0.8), np.array([1.0, 10.0]))
    assert c.shape == (1, 2, 2)
    assert math.isclose(c[0, 0, 1], 17.5 / 55)
    assert np.isinf(c[0, 0, 0]) and np.isinf(c[0, 1, 0]) and np.isinf(c[0, 1, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_proxy_costs_bit_identical_to_numpy_twin(seed):
    from asd._ext import get_ext

    ext = get_ext()
    if ext is None or not hasattr(ext, "proxy_costs"):
        pytest.skip("asd._C.proxy_costs not built (make build)")
    rng = np.random.default_rng(seed)
    B, K = 37, 5
    P, L = rng.integers(1, 500, B), rng.integers(0, 300, B).astype(np.int32)   # L = 0 is clamped to 1
    acc = rng.uniform(-0.2, 1.2, (B, K, K))                                      # clipped to [0, 1]
    acc[0, 0, 1] = np.nan
    size = np.sort(rng.uniform(0.1, 100.0, K))
    for rho in (0.05, 0.3):
        np.testing.assert_array_equal(proxy_costs(P, L, acc, size, rho), proxy_costs_ref(P, L, acc, size, rho))
    with pytest.raises(ValueError, match="accept_mean must have shape"):
        proxy_costs(P, L, acc[:, :2], size)


def test_stage_resolution_and_first_stage():
    assert resolve_stage(-1, 4) == 3 and resolve_stage(2, 4) == 2
    with pytest.raises(ValueError, match="valid: 0..3"):
        resolve_stage(4, 4)
    assert first_stage(PolicyConfig(name="single", stage=2), 4) == 2
    assert first_stage(PolicyConfig(name="dp"), 4) == 0
    assert first_stage(PolicyConfig(name="dp", start=2), 4) == 2
    assert first_stage(PolicyConfig(name="oracle", start=1), 4) == 1
    with pytest.raises(ValueError, match="valid: 0..3"):
        first_stage(PolicyConfig(name="dp", start=4), 4)
    with pytest.raises(ValueError, match="start: only policies dp, threshold"):
        PolicyConfig(name="single", stage=1, start=1)
    with pytest.raises(ValueError, match="start must be a stage >= 0"):
        PolicyConfig(name="dp", start=-1)
    assert set(REPLAN) == {"dp", "threshold", "confidence", "oracle"}


def test_next_move_takes_the_lowest_waiting_stage_whole():
    STOP = -1
    m, idx = next_move(np.array([STOP, 3, 2, STOP, 2, 3]))
    assert m == 2 and idx.tolist() == [2, 4]
    m, idx = next_move(np.array([STOP, 3, STOP, STOP, STOP, 3]))
    assert m == 3 and idx.tolist() == [1, 5]
    assert next_move(np.full(4, STOP)) is None and next_move(np.zeros(0, np.int64)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_calls_keeps_order_and_fills_every_call_but_the_last(seed):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(500, size=int(rng.integers(0, 200)), replace=False))
    bs = int(rng.integers(1, 40))
    calls = split_calls(idx, bs)
    assert np.array_equal(np.concatenate(calls) if calls else idx[:0], idx)
    assert all(c.size == bs for c in calls[:-1]) and (not calls or 1 <= calls[-1].size <= bs)
    assert len(calls) == -(-idx.size // bs)
