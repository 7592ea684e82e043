"""The label-informed predictor of the headroom analysis (asd.predictor.headroom): calibrated, sharper with μ."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asd.core.predictor import PriorPredictor
from asd.predictor import metrics
from asd.predictor.headroom import InformedPredictor, evidence, sharpen

ROOT = Path(__file__).resolve().parents[2]


def test_evidence_shape_and_checks():
    y = np.random.default_rng(1).random((50, 4)) < 0.5
    llr = evidence(y, 2.0, seed=3)
    assert llr.shape == (50, 4) and (llr[:, -1] == 0).all() and (llr[:, :-1] != 0).all()
    np.testing.assert_array_equal(evidence(y, 2.0, seed=3), llr)  # seeded
    assert not np.array_equal(evidence(y, 2.0, seed=4), llr)
    assert (evidence(y, 0.0, seed=3) == 0).all()  # μ = 0: the served predictor
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="mu"):
            evidence(y, bad, seed=0)
    with pytest.raises(ValueError, match="outcome"):
        evidence(y[:, 0], 1.0, seed=0)


def test_sharpened_predictions_stay_calibrated_and_discriminate_more():
    """A calibrated constant prior p on labels ~ Bernoulli(p): after the evidence, each bin of r̂' holds the
    label rate r̂' predicts (Bayes' rule with the true likelihood ratio), and the AUC is that of the evidence
    alone, Φ(μ/√2), rising with μ."""
    rng = np.random.default_rng(0)
    n, p = 200_000, 0.4
    y = np.zeros((n, 2), bool)
    y[:, 0] = rng.random(n) < p
    y[:, 1] = True
    r = np.broadcast_to(np.array([p, 1.0]), (n, 1, 2))
    aucs = []
    for mu in (0.5, 1.5, 3.0):
        q = sharpen(r, evidence(y, mu, seed=7))[:, 0, 0]
        assert metrics.ece(q, y[:, 0]) < 0.01
        a = metrics.auc(q, y[:, 0])
        assert abs(a - 0.5 * math.erfc(-mu / 2)) < 0.005  # Φ(μ/√2) = ½ erfc(−μ/2)
        aucs.append(a)
    assert aucs[0] < aucs[1] < aucs[2]


def test_sharpen_identity_and_shapes():
    r = np.random.default_rng(2).uniform(0.01, 0.99, (6, 3, 4))
    r[:, :, -1] = 1.0
    np.testing.assert_allclose(sharpen(r, np.zeros((6, 4))), r, rtol=1e-9)
    with pytest.raises(ValueError, match=r"\[B, S, K\]"):
        sharpen(r, np.zeros((6, 3)))


def test_informed_predictor_adds_each_rows_own_evidence():
    K = 3
    base = PriorPredictor(r_prior=(0.5, 0.5, 1.0))
    llr = np.array([[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pred = InformedPredictor(base, llr)
    record = np.zeros((3, K, 5), np.float32)
    r, acc = pred.predict_rows(record, np.array([2, 0]), np.array([0, 1]), K)
    assert r.shape == (2, 1, K) and acc.shape == (2, K, K)
    np.testing.assert_allclose(r[:, 0], [[0.5, 0.5, 1.0], [1 / (1 + math.exp(-2)), 0.5, 1.0]])
    with pytest.raises(ValueError, match="predict_rows"):
        pred.predict(record[:, 0], np.zeros(3, np.int64), K)
    with pytest.raises(ValueError, match="llr has shape"):
        pred.predict_rows(np.zeros((4, K, 5), np.float32), np.array([0]), np.array([0]), K)


def test_script_refuses_bad_arguments(tmp_path):
    """A negative μ or λ is refused before any file is read or written."""
    out = tmp_path / "r.json"
    for extra in (["--mus", "-1"], ["--lams", "nan"], ["--figure", str(tmp_path / "r.png")]):
        p = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts/predictor_headroom.py"),
                "sweep",
                "--data",
                "missing.h5",
                "--out",
                str(out),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2 and (extra[0] in p.stderr or "--out" in p.stderr), p.stderr
        assert not out.exists()
