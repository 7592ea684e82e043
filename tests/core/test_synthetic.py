"""The synthetic batch behind `asd run` (job synthetic): shapes, seeding, the structure it promises."""
import numpy as np
import pytest

from asd.core import synthetic
from asd.core.synthetic import StageLatency, SyntheticConfig


def make(seed=0, **kw):
    cfg = SyntheticConfig(batch=4000, draws=4, seed=seed, **kw)
    model = synthetic.cost_model(cfg.stages, cfg.batch_size)
    return cfg, model, synthetic.generate(cfg, model, np.random.default_rng(seed))


def test_shapes_dtypes_and_seed():
    cfg, model, d = make()
    B, S, K = 4000, 4, 4
    assert d["r"].shape == (B, S, K) and d["r"].dtype == np.float32
    assert d["cost"].shape == (B, K, K) and d["outcome"].shape == (B, K)
    assert (d["r"][:, :, -1] == 1).all() and d["outcome"][:, -1].all()
    upper = np.triu(np.ones((K, K), bool), 1)
    assert np.isfinite(d["cost"][:, upper]).all() and np.isinf(d["cost"][:, ~upper]).all()
    assert ((d["accept_mean"] >= 0) & (d["accept_mean"] <= 1)).all()
    again = make()[2]
    assert all(np.array_equal(d[k], again[k]) for k in d)
    assert not np.array_equal(d["r"], make(seed=1)[2]["r"])


def test_structure():
    _, model, d = make()
    # quality rises with the stage; outcomes are nested (a matching stage makes all later ones match)
    assert (np.diff(d["r_true"].mean(0)) > 0).all()
    assert (np.diff(d["outcome"].astype(int), axis=1) >= 0).all()
    # the predictor is informative: harder inputs get lower predictions
    assert np.corrcoef(d["difficulty"], d["r"][:, :, 0].mean(1))[0, 1] < -0.5
    # the final stage costs more than the first (Qwen-like ratios), and going there costs more than to stage 1
    assert 0.15 < d["draft_cost"].mean() < 0.6
    assert (d["cost"][:, 0, 3] > d["cost"][:, 0, 1]).mean() > 0.9


def test_config_validation():
    with pytest.raises(ValueError, match="skill"):
        SyntheticConfig(skill=[0.0])
    with pytest.raises(ValueError, match="lambdas"):
        SyntheticConfig(lambdas=[-1.0])
    with pytest.raises(ValueError, match="decode_ms_per_step"):
        StageLatency("x", 0.1, 1.0, -2.0, 0.1)
