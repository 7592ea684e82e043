"""Probability-forecast metrics (numpy): AUC, Brier score, expected calibration error, log loss, ROC, reliability.

Every function takes p [n] predicted probabilities of the positive class and y [n] 0/1 labels.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
LOG_EPS = 1e-6  # probabilities are clipped to [eps, 1 − eps] for the log loss


def _check(p, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"p and y must have the same length, got {p.size} and {y.size}")
    if p.size == 0:
        raise ValueError("no samples to evaluate (empty split)")
    return p, y


def auc(p, y) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count 1/2); NaN when one class is absent."""
    p, y = _check(p, y)
    pos = y > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(p.size)
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    ends = np.r_[starts[1:], p.size]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def brier(p, y) -> float:
    p, y = _check(p, y)
    return float(np.mean((p - y) ** 2))


def _weights(w, n: int) -> np.ndarray | None:
    """[n] float64 sample weights (None: every sample counts 1); ValueError unless finite, >= 0, sum > 0."""
    if w is None:
        return None
    w = np.asarray(w, np.float64).ravel()
    if w.size != n or not np.all(np.isfinite(w) & (w >= 0)) or not w.sum() > 0:
        raise ValueError(f"weights must be {n} finite numbers >= 0 with a positive sum")
    return w


def log_loss(p, y, eps: float = LOG_EPS, w=None) -> float:
    """Mean negative log-likelihood (weighted mean with sample weights ``w`` [n])."""
    p, y = _check(p, y)
    q = np.clip(p, eps, 1 - eps)
    nll = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    wt = _weights(w, p.size)
    return float(np.mean(nll) if wt is None else np.sum(wt * nll) / np.sum(wt))


def reliability(p, y, bins: int = ECE_BINS, w=None) -> dict:
    """Equal-width bins on [0, 1]: count (the weights' sum with ``w``), mean prediction, observed frequency per
    bin (empty bins: NaN)."""
    p, y = _check(p, y)
    wt = _weights(w, p.size)
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    cnt = np.bincount(b, weights=wt, minlength=bins).astype(np.float64)
    sp = np.bincount(b, weights=p if wt is None else wt * p, minlength=bins)
    sy = np.bincount(b, weights=y if wt is None else wt * y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": cnt, "confidence": sp / cnt, "frequency": sy / cnt}


def ece(p, y, bins: int = ECE_BINS, w=None) -> float:
    """Expected calibration error: Σ_b (n_b / n)·|mean p − mean y| over ``bins`` equal-width bins (weighted
    counts and means with sample weights ``w`` [n])."""
    r = reliability(p, y, bins, w)
    ok = r["count"] > 0
    n = r["count"].sum()
    return float(np.sum(r["count"][ok] / n * np.abs(r["confidence"][ok] - r["frequency"][ok])))


def roc_curve(p, y) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    p, y = _check(p, y)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order] > 0.5
    last = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(~ys)[last]
    n1, n0 = max(int(ys.sum()), 1), max(int((~ys).sum()), 1)
    return np.r_[0.0, fp / n0], np.r_[0.0, tp / n1]


def summary(p, y) -> dict:
    """n, positive rate, AUC, Brier, ECE (15 bins), log loss."""
    p, y = _check(p, y)
    return {
        "n": int(p.size),
        "positive_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "auc": auc(p, y),
        "brier": brier(p, y),
        "ece": ece(p, y),
        "log_loss": log_loss(p, y),
    }
