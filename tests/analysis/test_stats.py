"""asd.analysis.stats against hand-computed values and scipy, edge cases included."""

import math

import numpy as np
import pytest

sps = pytest.importorskip("scipy.stats", reason="scipy is not installed (requirements/base.txt)")

from asd.analysis.stats import (
    holm,
    mcnemar_exact,
    percentile_interval,
    resample_counts,
    seed_interval,
    stratified_mean_interval,
    wilcoxon_signed_rank,
)


def test_holm_hand_computed():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.2]), [0.2])  # a family of one: unchanged
    assert np.allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_holm_leaves_nan_out_of_the_family():
    out = holm([0.01, float("nan"), 0.04])
    assert math.isnan(out[1])
    assert np.allclose(out[[0, 2]], [0.02, 0.04])  # m = 2, not 3
    assert np.all(np.isnan(holm([float("nan")])))
    assert holm([]).size == 0


def test_mcnemar_exact_hand_computed():
    # 10 pairs only a right, 2 only b right: p = 2·P(X ≤ 2 | n=12, 1/2) = 2·(1 + 12 + 66)/4096
    a = np.r_[np.ones(10), np.zeros(2), np.ones(5), np.zeros(7)]
    b = np.r_[np.zeros(10), np.ones(2), np.ones(5), np.zeros(7)]
    r = mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"], r["n"]) == (10, 2, 24)
    assert r["pvalue"] == pytest.approx(158 / 4096)
    # 5 : 0 → 2·0.5⁵
    assert mcnemar_exact(np.ones(5), np.zeros(5))["pvalue"] == pytest.approx(0.0625)
    # symmetric in its arguments
    assert mcnemar_exact(b, a)["pvalue"] == pytest.approx(r["pvalue"])


def test_mcnemar_no_discordant_pairs_is_p_one():
    x = np.array([1, 0, 1, 1, 0])
    r = mcnemar_exact(x, x)
    assert r["pvalue"] == 1.0 and r["a_only"] == r["b_only"] == 0
    r = mcnemar_exact(np.array([1]), np.array([1]))  # one sample
    assert r["pvalue"] == 1.0


def test_mcnemar_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact(np.ones(3), np.ones(4))


def test_wilcoxon_matches_scipy_and_hand_computed():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 40), rng.normal(0.7, 1.0, 40)
    r = wilcoxon_signed_rank(x, y)
    ref = sps.wilcoxon(x - y)
    assert r["pvalue"] == pytest.approx(ref.pvalue) and r["statistic"] == pytest.approx(ref.statistic)
    assert r["median_diff"] == pytest.approx(np.median(x - y))
    # five positive differences, exact null: P(W+ = 15) = 1/32, two-sided 2/32
    assert wilcoxon_signed_rank(np.arange(1.0, 6.0), np.zeros(5))["pvalue"] == pytest.approx(2 / 32)


def test_wilcoxon_edge_cases():
    same = wilcoxon_signed_rank(np.full(7, 0.25), np.full(7, 0.25))  # all equal latencies
    assert same["pvalue"] == 1.0 and same["nonzero"] == 0 and same["median_diff"] == 0.0
    one = wilcoxon_signed_rank(np.array([2.0]), np.array([1.0]))  # one sample
    assert one["pvalue"] == 1.0 and one["n"] == 1
    # zero differences are dropped, NaN pairs left out
    r = wilcoxon_signed_rank(np.array([1.0, 2.0, 3.0, np.nan, 5.0]), np.array([1.0, 1.0, 1.0, 0.0, 1.0]))
    assert r["n"] == 4 and r["nonzero"] == 3


def test_seed_interval_is_scipy_percentile_bootstrap():
    v = [0.61, 0.64, 0.58, 0.66, 0.63]
    r = seed_interval(v, resamples=4000, seed=3)
    ref = sps.bootstrap(
        (np.array(v),), np.mean, method="percentile", n_resamples=4000, rng=np.random.default_rng(3)
    ).confidence_interval
    assert (r["lo"], r["hi"]) == pytest.approx((ref.low, ref.high))
    assert r["lo"] <= np.mean(v) <= r["hi"] and r["n"] == 5 and "percentile" in r["method"]


def test_seed_interval_edge_cases():
    assert seed_interval([0.7]) is None  # one seed: nothing to resample
    assert seed_interval([0.7, float("nan")]) is None
    r = seed_interval([0.5, 0.5, 0.5])  # all equal: degenerate interval
    assert (r["lo"], r["hi"]) == (0.5, 0.5)


def test_stratified_interval_agrees_with_scipy_on_one_stratum():
    x = (np.random.default_rng(1).random(200) < 0.7).astype(float)
    point, lo, hi = stratified_mean_interval([x], resamples=20000, seed=0)
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, rng=np.random.default_rng(9))
    assert point == pytest.approx(x.mean())
    # two Monte Carlo estimates of the same quantiles: within a fraction of the standard error (0.032)
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.008)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.008)


def test_stratified_interval_width_matches_the_analytic_standard_error():
    rng = np.random.default_rng(2)
    strata = [(rng.random(400) < p).astype(float) for p in (0.6, 0.8)]
    point, lo, hi = stratified_mean_interval(strata, resamples=20000, seed=1)
    se = 0.5 * math.sqrt(sum(s.var() / s.size for s in strata))  # SE of the mean of two independent means
    assert point == pytest.approx(np.mean([s.mean() for s in strata]))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_resample_counts_and_percentiles():
    c = resample_counts(7, 50, np.random.default_rng(0))
    assert c.shape == (50, 7) and np.all(c.sum(1) == 7) and np.all(c >= 0)
    with pytest.raises(ValueError, match="at least one sample"):
        resample_counts(0, 10, np.random.default_rng(0))
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan, np.nan])))
    lo, hi = percentile_interval(np.arange(1001.0))
    assert (lo, hi) == pytest.approx((25.0, 975.0))
