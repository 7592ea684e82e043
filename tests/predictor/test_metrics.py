"""Forecast metrics against brute-force definitions."""
import itertools

import numpy as np
import pytest

from asd.predictor import metrics


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    p = np.round(rng.random(60), 1)  # ties on purpose
    y = (rng.random(60) < p).astype(float)
    pos, neg = p[y == 1], p[y == 0]
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)])
    assert metrics.auc(p, y) == pytest.approx(brute, abs=1e-12)
    assert np.isnan(metrics.auc(p, np.ones(60)))


def test_ece_brier_logloss_by_hand():
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.5])
    y = np.array([0, 1, 1, 1, 0])
    # bins of width 1/15: {0.05, 0.05} → conf 0.05 freq 0.5; {0.95, 0.95} → 0.95 vs 1; {0.5} → 0.5 vs 0
    assert metrics.ece(p, y) == pytest.approx((2 * 0.45 + 2 * 0.05 + 0.5) / 5)
    assert metrics.brier(p, y) == pytest.approx(np.mean((p - y) ** 2))
    assert metrics.log_loss(p, y) == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert metrics.ece(np.array([1.0]), np.array([1])) == 0.0  # p = 1 falls in the last bin


def test_roc_curve_ends_and_empty_split():
    rng = np.random.default_rng(1)
    p, y = rng.random(50), rng.random(50) < 0.4
    fpr, tpr = metrics.roc_curve(p, y)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auc(p, y))
    with pytest.raises(ValueError, match="empty split"):
        metrics.summary([], [])


def test_weighted_log_loss_and_ece_equal_repeated_samples():
    rng = np.random.default_rng(2)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(float)
    w = rng.integers(0, 4, 300).astype(float)
    rep = np.repeat(np.arange(300), w.astype(int))
    assert metrics.log_loss(p, y, w=w) == pytest.approx(metrics.log_loss(p[rep], y[rep]), rel=1e-12)
    assert metrics.ece(p, y, w=w) == pytest.approx(metrics.ece(p[rep], y[rep]), rel=1e-12)
    for bad in (np.full(300, np.nan), np.zeros(300), np.ones(299)):
        with pytest.raises(ValueError, match="weights"):
            metrics.log_loss(p, y, w=bad)
