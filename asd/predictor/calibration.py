"""Calibration of the ensemble's r̂ on the validation split: temperature scaling or an isotonic table (numpy).

The served draw s of r̂_m at stage k is ``cal(σ(z_s / T))`` (asd.core.mlp): temperature scaling fits T
(cal = identity), isotonic regression fits a non-decreasing piecewise-linear table on σ(z_s) (T = 1). Both
are fitted for the quantity the cascade uses, the members' mean: temperature minimises the validation log loss
of mean_s σ(z_s / T); the isotonic table is the pool-adjacent-violators fit of the labels on every member's
σ(z_s) (so each draw is calibrated), thinned to at most ``max_knots`` knots by merging neighbouring blocks of
equal weight (merging keeps it monotone), and served by linear interpolation between the block centres
(``np.interp``: no sklearn at serving time).

``choose`` picks the method per (k, m) by 2-fold cross-fitting inside the validation split (fit on one half of
its samples, score the other half, and back): the out-of-fold log loss decides (ECE reported beside it), so the
choice is not made on the data a table was fitted to. The winner is then refitted on the whole split.
"""

from __future__ import annotations

import math

import numpy as np

from asd.core.mlp import sigmoid
from asd.predictor import metrics

ISO_EPS = 1e-3  # isotonic table values are clipped to [eps, 1 − eps]
T_MIN, T_MAX = 0.05, 20.0


def _mean_prob(z: np.ndarray, T: float) -> np.ndarray:
    return sigmoid(z / T).mean(axis=1)


def fit_temperature(z: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """T ∈ [0.05, 20] minimising the log loss of mean_s σ(z[:, s] / T) against y (grid, then golden section).

    z: [R, S] member logits; y: [R] 0/1; w: [R] sample weights or None (every row counts 1).
    """
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    if z.ndim == 1:
        z = z[:, None]

    def loss(lt: float) -> float:
        return metrics.log_loss(_mean_prob(z, math.exp(lt)), y, w=w)

    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), 61)
    vals = [loss(g) for g in grid]
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    best = min((vals[i], grid[i]), (fc, c), (fd, d))
    return float(math.exp(best[1]))


def pav(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool adjacent violators: blocks (centre x, mean y, weight), x strictly increasing, y non-decreasing.

    x, y, w: [n]; equal x values are pooled first.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    order = np.argsort(x, kind="mergesort")
    xs, ys, ws = x[order], y[order], w[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    W = np.add.reduceat(ws, starts)
    SX = np.add.reduceat(ws * xs, starts)
    SY = np.add.reduceat(ws * ys, starts)
    bw: list[float] = []
    bx: list[float] = []
    by: list[float] = []
    for wi, sxi, syi in zip(W.tolist(), SX.tolist(), SY.tolist()):
        bw.append(wi)
        bx.append(sxi)
        by.append(syi)
        while len(bw) > 1 and by[-2] / bw[-2] >= by[-1] / bw[-1]:
            wl, xl, yl = bw.pop(), bx.pop(), by.pop()
            bw[-1] += wl
            bx[-1] += xl
            by[-1] += yl
    bw_a = np.array(bw)
    return np.array(bx) / bw_a, np.array(by) / bw_a, bw_a


def thin(bx: np.ndarray, by: np.ndarray, bw: np.ndarray, max_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_knots`` blocks: neighbouring blocks merged into groups of about equal total weight."""
    n = bx.size
    if n <= max_knots:
        return bx, by
    cw = np.cumsum(bw)
    group = np.minimum((cw - bw / 2) / cw[-1] * max_knots, max_knots - 1).astype(np.int64)  # non-decreasing
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    W = np.add.reduceat(bw, starts)
    return np.add.reduceat(bw * bx, starts) / W, np.add.reduceat(bw * by, starts) / W


def fit_isotonic(
    z: np.ndarray, y: np.ndarray, max_knots: int = 64, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic table (x [n], y [n]), 2 ≤ n ≤ max_knots, of the labels on every member's σ(z).

    z: [R, S] member logits; y: [R] 0/1; w: [R] sample weights or None (every row counts 1).
    """
    z = np.asarray(z, np.float64)
    if z.ndim == 1:
        z = z[:, None]
    p = sigmoid(z).ravel()
    lab = np.repeat(np.asarray(y, np.float64), z.shape[1])
    bx, by, bw = pav(p, lab, None if w is None else np.repeat(np.asarray(w, np.float64), z.shape[1]))
    bx, by = thin(bx, by, bw, max_knots)
    by = np.clip(by, ISO_EPS, 1 - ISO_EPS)
    if bx.size == 1:  # one block: a constant
        return np.array([0.0, 1.0]), np.array([by[0], by[0]])
    return bx, by


def apply_temperature(z: np.ndarray, T: float) -> np.ndarray:
    """[R, S] calibrated draws."""
    return sigmoid(np.asarray(z, np.float64) / T)


def apply_isotonic(z: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """[R, S] calibrated draws (np.interp of σ(z) on the table)."""
    return np.interp(sigmoid(np.asarray(z, np.float64)), tx, ty)


def fit(method: str, z: np.ndarray, y: np.ndarray, max_knots: int, w: np.ndarray | None = None) -> dict:
    """{"method", "temperature", "iso_x", "iso_y"} of one calibrator ("none": T = 1, no table); w: [R] weights."""
    if method == "temperature":
        return {"method": method, "temperature": fit_temperature(z, y, w), "iso_x": [], "iso_y": []}
    if method == "isotonic":
        tx, ty = fit_isotonic(z, y, max_knots, w)
        return {"method": method, "temperature": 1.0, "iso_x": tx.tolist(), "iso_y": ty.tolist()}
    if method == "none":
        return {"method": method, "temperature": 1.0, "iso_x": [], "iso_y": []}
    raise ValueError(f"unknown calibration method {method!r}; valid: temperature, isotonic, none")


def apply(cal: dict, z: np.ndarray) -> np.ndarray:
    """[R, S] draws calibrated by ``cal`` (a ``fit`` result)."""
    if cal["iso_x"]:
        return apply_isotonic(z, np.asarray(cal["iso_x"]), np.asarray(cal["iso_y"]))
    return apply_temperature(z, cal["temperature"])


def choose(
    z: np.ndarray, y: np.ndarray, fold: np.ndarray, method: str, max_knots: int, w: np.ndarray | None = None
) -> dict:
    """Fit the calibration of one (k, m) on the validation rows: z [R, S] logits, y [R], fold [R] 0/1, w [R]
    sample weights or None (fits and out-of-fold scores weighted alike).

    method "auto": temperature or isotonic, whichever has the lower 2-fold out-of-fold log loss (ties:
    temperature); the chosen one refitted on all rows. The result also holds each candidate's out-of-fold
    log loss and ECE (``cv``).
    """
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    if y.size == 0:
        raise ValueError("no validation rows to calibrate on (empty split)")
    cands = ["temperature", "isotonic"] if method == "auto" else [method]
    cv = {}
    both = fold.min() != fold.max()
    for c in cands:
        if not both:
            break
        oof = np.empty(y.size)
        for f in (0, 1):
            tr, te = fold != f, fold == f
            oof[te] = apply(fit(c, z[tr], y[tr], max_knots, None if w is None else w[tr]), z[te]).mean(axis=1)
        cv[c] = {"log_loss": metrics.log_loss(oof, y, w=w), "ece": metrics.ece(oof, y, w=w)}
    best = min(cands, key=lambda c: (cv[c]["log_loss"] if c in cv else 0.0, cands.index(c)))
    out = fit(best, z, y, max_knots, w)
    out["cv"] = cv
    return out


def calibrate(w, val, fold: np.ndarray, method: str, max_knots: int):
    """(calibrated MLPWeights, report): ``choose`` for every (k, m), k ≤ m < K − 1, on the validation rows.

    w: uncalibrated ``asd.core.mlp.MLPWeights``; val: ``asd.predictor.data.Rows``; fold: [R] 0/1 per row (the
    same for all rows of a sample). Rows carry their sample weight in ``val.w_r`` (1 unless the training set is
    cell-balanced, ``asd.predictor.data.cell_weights``): the fits and their scores weigh each row by it. The
    report maps "k,m" to the method, T, the number of knots and the candidates' out-of-fold scores.
    """
    import dataclasses

    from asd.core.mlp import ensemble_logits_ref

    K = w.K
    z = ensemble_logits_ref(w, val.x, val.stage)  # [R, S, O]
    T = np.ones((K - 1, K - 1))
    tables: dict[tuple[int, int], tuple[list, list]] = {}
    report = {}
    for k in range(K - 1):
        sel = val.stage == k
        for m in range(k, K - 1):
            wt = val.w_r[sel, m].astype(np.float64)
            cal = choose(z[sel, :, m], val.y_r[sel, m], fold[sel], method, max_knots, None if (wt == 1).all() else wt)
            T[k, m] = cal["temperature"]
            if cal["iso_x"]:
                tables[(k, m)] = (cal["iso_x"], cal["iso_y"])
            report[f"{k},{m}"] = {
                "method": cal["method"],
                "temperature": cal["temperature"],
                "knots": len(cal["iso_x"]),
                "cv": cal["cv"],
            }
    Q = max([2] + [len(x) for x, _ in tables.values()])
    iso_x = np.zeros((K - 1, K - 1, Q))
    iso_y = np.zeros((K - 1, K - 1, Q))
    iso_n = np.zeros((K - 1, K - 1), np.int64)
    for (k, m), (tx, ty) in tables.items():
        iso_x[k, m, : len(tx)] = tx
        iso_y[k, m, : len(ty)] = ty
        iso_n[k, m] = len(tx)
    out = dataclasses.replace(w, temperature=T, iso_x=iso_x, iso_y=iso_y, iso_n=iso_n)
    out.validate()
    return out, report
