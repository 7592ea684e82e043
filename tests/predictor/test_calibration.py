"""Calibration: pool-adjacent-violators, table thinning, temperature fit, the cross-fitted choice."""
import numpy as np
import pytest

from asd.core.mlp import sigmoid
from asd.predictor import calibration as cal


def test_pav_by_hand_and_monotone():
    bx, by, bw = cal.pav(np.array([1.0, 2, 3, 4]), np.array([1.0, 0, 1, 1]))
    np.testing.assert_allclose(by, [0.5, 1.0])
    np.testing.assert_allclose(bx, [1.5, 3.5])
    np.testing.assert_allclose(bw, [2, 2])
    rng = np.random.default_rng(0)
    x = rng.random(2000)
    y = (rng.random(2000) < x**2).astype(float)
    bx, by, bw = cal.pav(x, y)
    assert (np.diff(bx) > 0).all() and (np.diff(by) >= 0).all() and bw.sum() == 2000
    tx, ty = cal.thin(bx, by, bw, 16)
    assert tx.size <= 16 and (np.diff(tx) > 0).all() and (np.diff(ty) >= 0).all()
    assert ty.min() >= by.min() and ty.max() <= by.max()
    # merging neighbours of equal weight: each knot is a weighted mean of its blocks, so the weighted label
    # mean of the table's groups equals the data's (checked through a table of 2 knots = 2 halves of the weight)
    tx2, ty2 = cal.thin(bx, by, bw, 2)
    assert tx2.size == 2 and ty2.mean() == pytest.approx(y.mean(), abs=0.02)
    same = cal.thin(bx, by, bw, bx.size)
    assert same[0] is bx and same[1] is by


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(1)
    t = rng.standard_normal(20000) * 2
    y = (rng.random(t.size) < sigmoid(t)).astype(float)
    z = np.stack([2.5 * t, 2.5 * t + 0.01], 1)  # logits 2.5× too sharp
    T = cal.fit_temperature(z, y)
    assert T == pytest.approx(2.5, rel=0.05)


def test_isotonic_table_and_choice():
    rng = np.random.default_rng(2)
    t = rng.standard_normal(6000)
    # a non-sigmoid miscalibration: temperature cannot fix it, isotonic can
    y = (rng.random(t.size) < np.where(t > 0, 0.9, 0.3)).astype(float)
    z = np.stack([t, t + 0.05 * rng.standard_normal(t.size)], 1)
    tx, ty = cal.fit_isotonic(z, y, max_knots=32)
    assert 2 <= tx.size <= 32 and (np.diff(tx) > 0).all() and (np.diff(ty) >= 0).all()
    assert ty.min() >= cal.ISO_EPS and ty.max() <= 1 - cal.ISO_EPS
    fold = (rng.random(t.size) < 0.5).astype(np.int8)
    res = cal.choose(z, y, fold, "auto", 32)
    assert res["method"] == "isotonic"
    assert res["cv"]["isotonic"]["log_loss"] < res["cv"]["temperature"]["log_loss"]
    # a plain sigmoid miscalibration: temperature is as good, and wins ties
    y2 = (rng.random(t.size) < sigmoid(t)).astype(float)
    res2 = cal.choose(3 * z, y2, fold, "auto", 32)
    assert res2["method"] == "temperature" and res2["temperature"] == pytest.approx(3, rel=0.15)
    assert cal.choose(z, y, fold, "none", 32)["temperature"] == 1.0
    with pytest.raises(ValueError, match="empty split"):
        cal.choose(z[:0], y[:0], fold[:0], "auto", 32)


def test_weighted_fits_equal_fits_on_repeated_rows():
    """Integer sample weights = those rows repeated: temperature, isotonic table and the chosen method agree."""
    rng = np.random.default_rng(5)
    n = 600
    z = rng.normal(0, 2, (n, 3))
    y = (rng.random(n) < sigmoid(0.5 * z.mean(1))).astype(np.float64)
    w = rng.integers(1, 4, n).astype(np.float64)
    rep = np.repeat(np.arange(n), w.astype(np.int64))
    assert cal.fit_temperature(z, y, w) == pytest.approx(cal.fit_temperature(z[rep], y[rep]), rel=1e-6)
    tx, ty = cal.fit_isotonic(z, y, 16, w)
    rx, ry = cal.fit_isotonic(z[rep], y[rep], 16)
    np.testing.assert_allclose(tx, rx, rtol=1e-9)
    np.testing.assert_allclose(ty, ry, rtol=1e-9)
    assert cal.fit_temperature(z, y, np.ones(n)) == pytest.approx(cal.fit_temperature(z, y), rel=1e-12)
    with pytest.raises(ValueError, match="weights"):
        cal.fit_temperature(z, y, -w)
