"""Statistics of the analysis (docs/analysis.md#methods): bootstrap intervals, exact McNemar, Wilcoxon, Holm.

Bootstrap intervals are percentile intervals. Two resampling units are used:

- *samples within a seed*: the prompts of one (dataset, seed) stratum are resampled with replacement, one
  multinomial count vector per resample (``resample_counts``: [R, n]); every cell of that stratum is
  resampled with the *same* counts (the cells are paired: every policy of one seed saw the same prompts),
  so a statistic that compares two cells (a speedup, a difference) is a paired bootstrap. Strata are
  resampled independently and a statistic over seeds is computed per resample (stratified bootstrap);
- *seeds*: the per-seed values (e.g. 5 seed means) are resampled with replacement
  (``seed_interval``, ``scipy.stats.bootstrap`` with ``method="percentile"``).

numpy at import; scipy inside the functions that use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95  # two-sided confidence level of every interval


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[R, n] float64 bootstrap counts: row r says how often each of the n samples is drawn in resample r.

    Each row sums to n (a multinomial draw with equal probabilities). ``counts @ x`` [R] are the resampled
    sums of a per-sample vector x [n]; ``counts @ X`` does many vectors at once.
    """
    if n < 1:
        raise ValueError(f"a stratum needs at least one sample, got n={n}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi): the (1−level)/2 and (1+level)/2 quantiles of bootstrap replicates [R] (NaN ones left out).

    (nan, nan) when no replicate is finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def seed_interval(
    values: Sequence[float] | np.ndarray, level: float = LEVEL, resamples: int = 10_000, seed: int = 0
) -> dict | None:
    """Percentile bootstrap interval of the mean of per-seed values (``scipy.stats.bootstrap``).

    Returns ``{"lo", "hi", "n", "method"}``; None with fewer than two finite values (no spread to
    resample). Equal values give the degenerate interval [v, v].
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    method = f"percentile bootstrap over {v.size} seed values, {resamples} resamples"
    if np.all(v == v[0]):
        return {"lo": float(v[0]), "hi": float(v[0]), "n": int(v.size), "method": method}
    from scipy import stats

    res = stats.bootstrap(
        (v,),
        np.mean,
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return {"lo": float(ci.low), "hi": float(ci.high), "n": int(v.size), "method": method}


def stratified_mean_interval(
    strata: Sequence[np.ndarray], level: float = LEVEL, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of stratum means, lo, hi): percentile interval from resampling within each stratum.

    The building block of the per-seed accuracy interval, exposed for tests (one stratum = the ordinary
    percentile bootstrap of a mean). strata: arrays of per-sample values, e.g. the scores of each seed.
    """
    rng = np.random.default_rng(seed)
    point = float(np.mean([np.mean(s) for s in strata]))
    reps = np.zeros(resamples)
    for s in strata:
        x = np.asarray(s, dtype=np.float64)
        reps += resample_counts(x.size, resamples, rng) @ x / x.size
    reps /= len(strata)
    lo, hi = percentile_interval(reps, level)
    return point, lo, hi


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """Exact McNemar test of paired binary outcomes a [n], b [n] (1 = correct).

    Discordant pairs: ``b01`` = a right and b wrong, ``b10`` = a wrong and b right. Under H0 they split
    Binomial(b01 + b10, 1/2); the two-sided p-value is ``scipy.stats.binomtest(b01, b01 + b10).pvalue``.
    No discordant pairs: p = 1 (nothing contradicts H0).
    """
    x = np.asarray(a).astype(bool)
    y = np.asarray(b).astype(bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"mcnemar_exact needs two 1-d arrays of the same length, got {x.shape} and {y.shape}")
    b01 = int(np.sum(x & ~y))
    b10 = int(np.sum(~x & y))
    if b01 + b10 == 0:
        p = 1.0
    else:
        from scipy import stats

        p = float(stats.binomtest(b01, b01 + b10, 0.5, alternative="two-sided").pvalue)
    return {"test": "mcnemar_exact", "n": int(x.size), "a_only": b01, "b_only": b10, "pvalue": min(1.0, p)}


def wilcoxon_signed_rank(x: np.ndarray, y: np.ndarray) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired values x [n], y [n] (``scipy.stats.wilcoxon``).

    Zero differences are dropped (``zero_method="wilcox"``); scipy chooses the exact null distribution for
    small samples without ties and the normal approximation otherwise (``method="auto"``). No non-zero
    difference (including all-equal values): p = 1. Reports the median of x − y.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"wilcoxon_signed_rank needs two 1-d arrays of the same length, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    nz = int(np.count_nonzero(d))
    out = {
        "test": "wilcoxon_signed_rank",
        "n": int(d.size),
        "nonzero": nz,
        "median_diff": float(np.median(d)) if d.size else math.nan,
    }
    if nz == 0:
        return {**out, "statistic": 0.0, "pvalue": 1.0}
    from scipy import stats

    res = stats.wilcoxon(d[d != 0], zero_method="wilcox", alternative="two-sided", method="auto")
    return {**out, "statistic": float(res.statistic), "pvalue": float(res.pvalue)}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), same order as given; NaN entries stay NaN
    and are not counted in the family.

    Sorted ascending p_(1) ≤ … ≤ p_(m): adj_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)).
    Example: [0.01, 0.04, 0.03, 0.005] → [0.03, 0.06, 0.06, 0.02].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out
