"""Held-out evaluation of a predictor (numpy): per-stage metrics, spread vs error, and the routing ablation.

Everything here runs the served forward pass (``asd.core.mlp.MLPPredictor.predict``: the compiled kernel when
``asd._C`` is built), so the numbers describe the predictor the cascade uses.
"""

from __future__ import annotations

import math

import numpy as np

from asd.core.dp import STOP, solve
from asd.core.mlp import pair_index
from asd.core.routing import proxy_costs
from asd.predictor import metrics
from asd.predictor.data import Rows, TrainingSet, nan_fill_values


def predict_rows(pred, rows: Rows, K: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """r [R, S, K], accept [R, K, K] of every row, in chunks."""
    rs, accs = [], []
    for i in range(0, len(rows), chunk):
        r, a = pred.predict(rows.x[i : i + chunk], rows.stage[i : i + chunk], K)
        rs.append(r)
        accs.append(a)
    return np.concatenate(rs), np.concatenate(accs)


def stage_metrics(r: np.ndarray, rows: Rows, K: int, names: list[str]) -> list[dict]:
    """Per stage k < K − 1: metrics of r̂_k (the members' mean) from stage-k features against r_k."""
    out = []
    for k in range(K - 1):
        sel = rows.stage == k
        if not sel.any():
            raise ValueError(f"no held-out rows at stage {k} (empty split)")
        p = r[sel, :, k].mean(1)
        s = metrics.summary(p, rows.y_r[sel, k])
        out.append({"stage": k, "name": names[k], **s, "ece_if_calibrated": ece_noise_floor(p)})
    return out


def ece_noise_floor(p: np.ndarray, draws: int = 200, seed: int = 0) -> dict:
    """ECE a perfectly calibrated predictor would show on these n predictions: labels drawn as Bernoulli(p)
    ``draws`` times (seeded); mean and 90th percentile. With a few hundred rows it is several points: an ECE
    below it cannot be told apart from perfect calibration."""
    rng = np.random.default_rng(seed)
    e = [metrics.ece(p, rng.random(p.size) < p) for _ in range(draws)]
    return {"mean": float(np.mean(e)), "p90": float(np.quantile(e, 0.9))}


def pair_metrics(r: np.ndarray, rows: Rows, K: int) -> list[dict]:
    """Per (k, m), k ≤ m < K − 1: metrics of r̂_m predicted from stage-k features."""
    out = []
    for k in range(K - 1):
        sel = rows.stage == k
        for m in range(k, K - 1):
            out.append({"stage": k, "target": m, **metrics.summary(r[sel, :, m].mean(1), rows.y_r[sel, m])})
    return out


def accept_errors(acc: np.ndarray, rows: Rows, K: int) -> list[dict]:
    """Per (k, j, m): mean absolute error of â_{j,m} from stage-k features against a_{j,m}."""
    out = []
    for k in range(K - 1):
        sel = rows.stage == k
        for j in range(k, K - 1):
            for m in range(j + 1, K):
                p = pair_index(j, m, K)
                ok = sel & (rows.w_a[:, p] > 0)
                if ok.any():
                    err = np.abs(acc[ok, j, m] - rows.y_a[ok, p])
                    out.append(
                        {
                            "stage": k,
                            "j": j,
                            "m": m,
                            "n": int(ok.sum()),
                            "mae": float(err.mean()),
                            "mean_label": float(rows.y_a[ok, p].mean()),
                        }
                    )
    return out


def spread_table(r: np.ndarray, rows: Rows, K: int, bins: int = 5, stage: int | None = None) -> list[dict]:
    """Held-out error of r̂_k by ensemble spread: rows (pooled over stages k < K − 1, or one ``stage``) in
    ``bins`` quantile bins of std_s r̂_k; per bin the mean std, the misclassification rate of r̂ at 0.5, the
    mean |r̂ − r| and the Brier score."""
    sel = np.arange(len(rows)) if stage is None else np.flatnonzero(rows.stage == stage)
    k = rows.stage[sel]
    draws = r[sel, :, :][np.arange(sel.size), :, k]  # [n, S] draws of r̂_k
    y = rows.y_r[sel, k]
    mean, std = draws.mean(1), draws.std(1)
    edges = np.quantile(std, np.linspace(0, 1, bins + 1))
    b = np.clip(np.searchsorted(edges[1:-1], std, side="right"), 0, bins - 1)
    out = []
    for i in range(bins):
        s = b == i
        if not s.any():
            continue
        out.append(
            {
                "bin": i,
                "n": int(s.sum()),
                "std_min": float(std[s].min()),
                "std_max": float(std[s].max()),
                "std_mean": float(std[s].mean()),
                "error_rate": float(np.mean((mean[s] > 0.5) != (y[s] > 0.5))),
                "abs_error": float(np.mean(np.abs(mean[s] - y[s]))),
                "brier": float(np.mean((mean[s] - y[s]) ** 2)),
            }
        )
    return out


def spread_given_mean(r: np.ndarray, rows: Rows, bins: int = 5) -> dict:
    """Does the spread add to the mean? Rows (pooled over stages) in ``bins`` quantile bins of the ensemble mean
    r̂_k; inside each bin, the half with the larger std against the half with the smaller: their mean |r̂ − r|
    (and Brier). The std is larger near r̂ = 0.5, where errors are larger anyway; within a bin of r̂ that
    confound is held (mostly) fixed."""
    n = len(rows)
    k = rows.stage
    draws = r[np.arange(n), :, k]  # [n, S]
    y = rows.y_r[np.arange(n), k]
    mean, std = draws.mean(1), draws.std(1)
    edges = np.quantile(mean, np.linspace(0, 1, bins + 1))
    b = np.clip(np.searchsorted(edges[1:-1], mean, side="right"), 0, bins - 1)
    out, lo_err, hi_err, lo_b, hi_b, w = [], [], [], [], [], []
    for i in range(bins):
        s = np.flatnonzero(b == i)
        if s.size < 4:
            continue
        order = s[np.argsort(std[s], kind="mergesort")]
        lo, hi = order[: order.size // 2], order[order.size // 2 :]
        e_lo, e_hi = np.abs(mean[lo] - y[lo]).mean(), np.abs(mean[hi] - y[hi]).mean()
        br_lo, br_hi = ((mean[lo] - y[lo]) ** 2).mean(), ((mean[hi] - y[hi]) ** 2).mean()
        out.append(
            {
                "bin": i,
                "n": int(s.size),
                "mean_r": float(mean[s].mean()),
                "std_low_half": float(std[lo].mean()),
                "std_high_half": float(std[hi].mean()),
                "abs_error_low_std": float(e_lo),
                "abs_error_high_std": float(e_hi),
                "brier_low_std": float(br_lo),
                "brier_high_std": float(br_hi),
            }
        )
        lo_err.append(e_lo)
        hi_err.append(e_hi)
        lo_b.append(br_lo)
        hi_b.append(br_hi)
        w.append(s.size)
    wa = np.asarray(w, np.float64)
    return {
        "bins": out,
        "abs_error_low_std": float(np.average(lo_err, weights=wa)),
        "abs_error_high_std": float(np.average(hi_err, weights=wa)),
        "brier_low_std": float(np.average(lo_b, weights=wa)),
        "brier_high_std": float(np.average(hi_b, weights=wa)),
    }


def simulate_routing(
    pred,
    data: TrainingSet,
    samples: np.ndarray,
    sizes: np.ndarray,
    lam: float,
    kappa: float,
    prefill_ratio: float = 0.05,
) -> dict:
    """The cascade's decisions replayed offline on full traces: policy dp (asd.core.dp.solve) on the proxy costs
    (asd.core.routing.proxy_costs with the predicted â) from stage 0 until every sample stops.

    A sample at stage m reached by a skip j → m (j < m − 1) sees stage m's recorded features with
    ``accept_ratio_prev`` = a_{j,m} (the data records the adjacent route). Greedy decoding is lossless, so y_m is
    the same whatever the route. Realised cost: the proxy cost of each transition taken with the true a_{j,m}
    (the first stage's own draft excluded), in units of the final model's latency.
    """
    K = data.K
    samples = np.asarray(samples, np.int64)
    n = samples.size
    col = data.feature_names.index("accept_ratio_prev")
    fill = nan_fill_values(data.feature_names).astype(np.float32)
    cur = np.zeros(n, np.int64)
    prev = np.full(n, -1, np.int64)
    final = np.full(n, -1, np.int64)
    cost = np.zeros(n)
    live = np.arange(n)
    while live.size:
        at_end = cur[live] == K - 1
        final[live[at_end]] = K - 1
        live = live[~at_end]
        if not live.size:
            break
        s, k = samples[live], cur[live]
        x = data.features[s, k].copy()
        skip = prev[live] >= 0
        x[skip, col] = data.accept_frac[s[skip], prev[live][skip], k[skip]]
        bad = np.isnan(x)
        x[bad] = np.broadcast_to(fill, x.shape)[bad]
        r, acc = pred.predict(x, k, K)
        plen = data.prompt_len[s]
        L = data.draft_len[s, k]
        c = proxy_costs(plen, L, acc, sizes, prefill_ratio)
        plan = solve(r, c, k, lam, kappa)
        stop = plan.action == STOP
        final[live[stop]] = k[stop]
        go = ~stop
        if go.any():
            g, m = live[go], plan.action[go]
            true_acc = np.nan_to_num(data.accept_frac[samples[g]], nan=0.0).astype(np.float64)
            ct = proxy_costs(plen[go], L[go], true_acc, sizes, prefill_ratio)
            cost[g] += ct[np.arange(g.size), cur[g], m]
            prev[g] = cur[g]
            cur[g] = m
        live = live[go]
    correct = data.agree_final[samples, final].astype(bool)
    early = final < K - 1
    n_early = int(early.sum())
    wrong = early & ~correct
    return {
        "lam": lam,
        "kappa": kappa,
        "n": n,
        "final_stage_hist": np.bincount(final, minlength=K).tolist(),
        "early_stops": n_early,
        "early_stop_rate": n_early / n,
        "wrong_early_stops": int(wrong.sum()),
        "wrong_fraction_of_early_stops": (float(wrong.sum()) / n_early) if n_early else float("nan"),
        "wrong_fraction_of_all": float(wrong.mean()),
        "mean_transition_cost": float(cost.mean()),
        "score": float(data.score[samples, final].mean()),
        "score_final_stage": float(data.score[samples, K - 1].mean()),
    }


def routing_ablation(pred, data: TrainingSet, samples: np.ndarray, sizes, lam: float, kappas) -> dict:
    """``simulate_routing`` at λ for every κ, and for each κ > 0 the κ = 0 run whose λ' gives about as many early
    stops (bisection on log λ'): the risk term must beat a plain shift of λ to mean something."""
    sizes = np.asarray(sizes, np.float64)
    if sizes.shape != (data.K,) or not (sizes > 0).all():
        raise ValueError(f"stage_sizes must hold K={data.K} positive relative stage costs, got {sizes.tolist()}")
    runs = [simulate_routing(pred, data, samples, sizes, lam, float(k)) for k in kappas]
    matched = []
    for run in runs:
        if run["kappa"] == 0 or not math.isfinite(lam):
            continue
        target = run["early_stops"]
        lo, hi = math.log(max(lam, 1e-6)), math.log(max(lam, 1e-6) * 1e4)
        best = None
        for _ in range(30):
            mid = (lo + hi) / 2
            sim = simulate_routing(pred, data, samples, sizes, math.exp(mid), 0.0)
            if best is None or abs(sim["early_stops"] - target) < abs(best["early_stops"] - target):
                best = sim
            if sim["early_stops"] > target:
                lo = mid
            else:
                hi = mid
            if sim["early_stops"] == target:
                break
        matched.append({"kappa": run["kappa"], "kappa0_matched": best})
    from asd.core.predictor import PriorPredictor

    prior = simulate_routing(PriorPredictor(), data, samples, sizes, lam, 0.0)
    return {"lam": lam, "runs": runs, "matched_early_stops": matched, "prior_predictor": prior}
