"""The predictor's forward pass: compiled kernel (asd._C.MLPForward) vs numpy twin, checks, the Decider path."""
import math

import numpy as np
import pytest

import asd.core.mlp as mlp
from asd.core.decision import Decider
from asd.core.dp import PolicyConfig
from asd.core.features import FEATURE_NAMES, NUM_FEATURES
from asd.core.mlp import MLPPredictor, mlp_forward_ref, pair_index, random_weights
from asd._ext import get_ext

needs_ext = pytest.mark.skipif(get_ext() is None or not hasattr(get_ext(), "MLPForward"),
                               reason="asd._C with MLPForward not built")


def _inputs(rng, B, K, dtype=np.float32):
    x = (3 * rng.standard_normal((B, NUM_FEATURES))).astype(dtype)
    stage = rng.integers(0, K, B)
    return x, stage


@needs_ext
@pytest.mark.parametrize("K,S,hidden,iso", [(4, 5, (16,), True), (4, 5, (32,), False), (2, 1, (8,), True),
                                             (3, 3, (16, 8), True), (5, 5, (12,), True), (6, 2, (4, 4, 4), False),
                                             (4, 7, (20,), True)])
def test_kernel_matches_twin(K, S, hidden, iso):
    rng = np.random.default_rng([K, S, len(hidden), int(iso)])
    for trial in range(3):
        w = random_weights(rng, FEATURE_NAMES, K, S, hidden, isotonic=iso)
        pred = MLPPredictor(w)
        assert pred.compiled is not None
        for B, dtype in ((1, np.float32), (16, np.float32), (37, np.float64)):
            x, stage = _inputs(rng, B, K, dtype)
            r, acc = pred.predict(x, stage, K)
            r0, acc0 = mlp_forward_ref(w, x, stage)
            assert r.shape == (B, S, K) and acc.shape == (B, K, K)
            np.testing.assert_allclose(r, r0, rtol=0, atol=1e-6)
            np.testing.assert_allclose(acc, acc0, rtol=0, atol=1e-6)
            assert np.abs(r - r0).max() < 1e-12  # in practice: the same float32 FMAs on both sides, then float64


@needs_ext
def test_kernel_matches_twin_with_ablated_columns():
    """Columns with scale 0 (a feature group left out in training) are skipped by the kernel's first layer."""
    import dataclasses

    rng = np.random.default_rng(11)
    w = random_weights(rng, FEATURE_NAMES, 4, 5, (16,))
    for drop in ([], list(range(23, NUM_FEATURES)), list(range(5, 20)), list(range(NUM_FEATURES))):
        scale = w.scale.copy()
        scale[drop] = 0.0
        wd = dataclasses.replace(w, scale=scale)
        x, stage = _inputs(rng, 16, 4)
        r, acc = MLPPredictor(wd).predict(x, stage, 4)
        r0, acc0 = mlp_forward_ref(wd, x, stage)
        np.testing.assert_allclose(r, r0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(acc, acc0, rtol=0, atol=1e-12)
        y = x.copy()
        y[0, drop[:1] or [0]] = np.nan  # a dropped column must still be finite
        with pytest.raises(ValueError, match="finite"):
            MLPPredictor(wd).predict(y, stage, 4)


def test_twin_output_conventions():
    rng = np.random.default_rng(1)
    K, S = 4, 5
    w = random_weights(rng, FEATURE_NAMES, K, S, (16,))
    x, stage = _inputs(rng, 64, K)
    r, acc = mlp_forward_ref(w, x, stage)
    assert ((r >= 0) & (r <= 1)).all() and (r[:, :, K - 1] == 1).all()
    for b in range(64):
        k = stage[b]
        assert (r[b, :, :k] == 0.5).all()
        for j in range(K):
            for m in range(K):
                if not (k <= j < m):
                    assert acc[b, j, m] == 0
                else:
                    assert 0 < acc[b, j, m] < 1
    # an input at the last stage: no head
    last = stage == K - 1
    assert last.any() and (r[last, :, : K - 1] == 0.5).all() and (acc[last] == 0).all()


def test_twin_formulas_by_hand():
    """One sample, one member, one layer: the docstring's formulas written out in float64 (the twin rounds the
    network's arithmetic to float32, hence the tolerance)."""
    rng = np.random.default_rng(2)
    K = 3
    w = random_weights(rng, FEATURE_NAMES, K, 1, (5,), isotonic=False)
    x = rng.standard_normal((1, NUM_FEATURES)).astype(np.float32)
    xn = (x[0].astype(np.float64) - w.mean) * w.scale
    h = np.maximum(xn @ w.layers[0][0][0] + w.layers[0][1][0], 0)
    z = h @ w.head_w[0, 0] + w.head_b[0, 0]
    r, acc = mlp_forward_ref(w, x, np.array([0]))
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for m in range(K - 1):
        assert r[0, 0, m] == pytest.approx(sig(z[m] / w.temperature[0, m]), abs=1e-5)
    assert acc[0, 0, 1] == pytest.approx(sig(z[K - 1 + pair_index(0, 1, K)]), abs=1e-5)
    assert acc[0, 1, 2] == pytest.approx(sig(z[K - 1 + pair_index(1, 2, K)]), abs=1e-5)


def test_sigmoid_extremes_and_isotonic_interp():
    assert mlp.sigmoid(np.array([-1e4, 0.0, 1e4])).tolist() == [0.0, 0.5, 1.0]
    rng = np.random.default_rng(3)
    w = random_weights(rng, FEATURE_NAMES, 3, 2, (4,))
    w.iso_n[:] = 3
    w.iso_x[:, :, :3] = [0.2, 0.5, 0.8]
    w.iso_y[:, :, :3] = [0.1, 0.1, 0.9]
    x, stage = _inputs(rng, 200, 3)
    r, _ = mlp_forward_ref(w, x, stage)
    vals = r[stage == 0][:, :, 0]
    assert vals.min() >= 0.1 - 1e-12 and vals.max() <= 0.9 + 1e-12


@pytest.mark.parametrize("use_kernel", [True, False])
def test_bad_input(use_kernel, monkeypatch):
    if use_kernel and (get_ext() is None or not hasattr(get_ext(), "MLPForward")):
        pytest.skip("asd._C with MLPForward not built")
    if not use_kernel:
        monkeypatch.setattr(mlp, "get_ext", lambda: None)
    rng = np.random.default_rng(4)
    K = 4
    pred = MLPPredictor(random_weights(rng, FEATURE_NAMES, K, 5, (8,)))
    assert (pred.compiled is None) != use_kernel
    x, stage = _inputs(rng, 8, K)
    with pytest.raises(ValueError, match="shape"):
        pred.predict(x[:, :-1], stage, K)
    with pytest.raises(ValueError, match="K=4"):
        pred.predict(x, stage, 5)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[3, 7] = bad
        with pytest.raises(ValueError, match=rf"features\[3, 7\] \({FEATURE_NAMES[7]}\)"):
            pred.predict(y, stage, K)
    with pytest.raises(ValueError, match="stage"):
        pred.predict(x, np.full(8, K), K)
    with pytest.raises(ValueError, match="stage"):
        pred.predict(x, stage.astype(np.float64), K)
    rec = np.zeros((8, K, NUM_FEATURES), np.float32)
    rec[np.arange(8), stage] = x
    rec[2, stage[2], 0] = np.nan
    with pytest.raises(ValueError, match=r"\(stage\)"):
        pred.predict_rows(rec, np.arange(8), stage, K)
    with pytest.raises((ValueError, IndexError)):
        pred.predict_rows(rec, np.array([0, 9]), stage[:2], K)


@needs_ext
def test_predict_rows_reads_the_record_in_place():
    rng = np.random.default_rng(5)
    K, N = 4, 20
    pred = MLPPredictor(random_weights(rng, FEATURE_NAMES, K, 5, (16,)))
    rec = np.full((N, K, NUM_FEATURES), np.nan, np.float32)
    rows = np.array([3, 7, 0, 19, 11])
    cur = np.array([0, 2, 1, 0, 3])
    rec[rows, cur] = rng.standard_normal((5, NUM_FEATURES))
    r, acc = pred.predict_rows(rec, rows, cur, K)
    r0, acc0 = pred.predict(rec[rows, cur], cur, K)
    np.testing.assert_array_equal(r, r0)
    np.testing.assert_array_equal(acc, acc0)


def test_weights_validation():
    rng = np.random.default_rng(6)
    w = random_weights(rng, FEATURE_NAMES, 4, 5, (8,))
    import dataclasses

    with pytest.raises(ValueError, match="head_w"):
        MLPPredictor(dataclasses.replace(w, head_w=w.head_w[:, :, :4]))
    with pytest.raises(ValueError, match="temperature"):
        MLPPredictor(dataclasses.replace(w, temperature=-w.temperature))
    with pytest.raises(ValueError, match="finite"):
        MLPPredictor(dataclasses.replace(w, mean=np.full(NUM_FEATURES, np.nan)))


def test_decider_uses_the_mlp():
    """The cascade's decision with an MLP predictor = its predict on the gathered features → proxy costs → DP."""
    from asd.core.routing import proxy_costs
    from asd.core.dp import solve_ref

    rng = np.random.default_rng(7)
    K, N = 4, 12
    pred = MLPPredictor(random_weights(rng, FEATURE_NAMES, K, 5, (16,)))
    sizes = np.array([1.0, 4.0, 20.0, 100.0])
    dec = Decider(PolicyConfig(name="dp", lam=1.0, kappa=0.5), K, sizes, pred)
    feats = np.full((N, K, NUM_FEATURES), np.nan, np.float32)
    live = np.array([0, 2, 3, 5, 8, 11])
    cur = np.array([0, 0, 1, 2, 0, 1])
    feats[live, cur] = rng.standard_normal((live.size, NUM_FEATURES))
    plen = rng.integers(10, 50, N)
    resp = [np.zeros(rng.integers(1, 30), np.int64) for _ in range(N)]
    predictions = np.full((N, K, K), np.nan, np.float32)
    plan = dec.decide(feats, plen, resp, live, cur, np.arange(N), predictions)
    r, acc = pred.predict(feats[live, cur], cur, K)
    cost = proxy_costs(plen[live], np.array([len(resp[i]) for i in live]), acc, sizes)
    ref = solve_ref(r, cost, cur, 1.0, 0.5)
    np.testing.assert_array_equal(plan.action, ref.action)
    np.testing.assert_allclose(plan.value, ref.value, rtol=1e-12)
    np.testing.assert_allclose(predictions[live, cur], r.mean(1).astype(np.float32))
