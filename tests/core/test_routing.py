"""Routing helpers: the cost proxy's hand value and shape, stage resolution, which policies re-plan."""
import math

import numpy as np
import pytest

from asd.core.dp import PolicyConfig
from asd.core.routing import REPLAN, first_stage, proxy_costs, resolve_stage


def test_proxy_costs_hand_value():
    # K = 2, sizes 1 and 10; P = 100, L = 50, â = 0.8, ρ = 0.05:
    # c_{0→1} = (10/10)·(0.05·150 + 0.2·50) / (0.05·100 + 50) = 17.5 / 55
    c = proxy_costs(np.array([100]), np.array([50]), np.full((1, 2, 2), 0.8), np.array([1.0, 10.0]))
    assert c.shape == (1, 2, 2)
    assert math.isclose(c[0, 0, 1], 17.5 / 55)
    assert np.isinf(c[0, 0, 0]) and np.isinf(c[0, 1, 0]) and np.isinf(c[0, 1, 1])


def test_stage_resolution_and_first_stage():
    assert resolve_stage(-1, 4) == 3 and resolve_stage(2, 4) == 2
    with pytest.raises(ValueError, match="valid: 0..3"):
        resolve_stage(4, 4)
    assert first_stage(PolicyConfig(name="single", stage=2), 4) == 2
    assert first_stage(PolicyConfig(name="dp"), 4) == 0
    assert set(REPLAN) == {"dp", "threshold", "oracle"}
