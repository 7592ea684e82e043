"""The report's figures (matplotlib PNG), each written with the data it plots as JSON beside it.

``make_figures(run, rec, out_dir)`` → a list of ``{"name", "png", "json", "caption"}``:

- ``pareto_<group>``: accuracy vs speedup over the final stage alone, every row of the group with its
  95% intervals (over samples) in both directions, dp points joined in λ order (a line per start stage: dp
  from a later stage in green), the frontier marked, the oracle hollow (an upper bound);
- ``utilisation``: per group, where samples ended (stacked) and which stages ran, against λ (dp rows from
  stage 0);
- ``decision_boundary``: r̂_0 (the predictor's P(stage 0's output == the final's), recorded at stage 0)
  against stage 0's mean token entropy, coloured by the decision taken at stage 0, dp at λ = 1;
- ``calibration``: reliability of r̂_0 against the outcome o_0 (stage 0 alone's tokens == the final stage
  alone's, same prompts), ten equal-width bins, with expected calibration error and Brier score;
- ``cost_model``: measured seconds of every stage call against the cost table's estimate (where a table
  priced the decisions);
- ``projection``: the projected speedup over the final stage alone at Qwen2.5 scale, wall-clock and
  GPU-seconds, per cost table (labelled projection).

matplotlib is imported inside the functions (Agg backend).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asd.analysis.analyze import ALL, fmt_num, jsonable
from asd.analysis.run import Run

POLICY_STYLE = {  # marker, colour
    "dp": ("o", "tab:blue"),
    "lossless": ("D", "tab:cyan"),
    "single": ("s", "black"),
    "fixed_depth": ("^", "tab:brown"),
    "threshold": ("v", "tab:orange"),
    "confidence": ("<", "tab:olive"),
    "speculative": ("P", "tab:purple"),
    "random": ("x", "tab:gray"),
    "oracle": ("*", "tab:red"),
}
START_STYLE = ("h", "tab:green")  # dp from a later stage (PolicyConfig.start > 0): its own line
DECISION_COLOURS = ["tab:green", "tab:orange", "tab:purple", "tab:red", "tab:brown", "tab:pink"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8})
    return plt


def _save(fig, out_dir: Path, name: str, data: Any, caption: str) -> dict:
    png, js = out_dir / f"{name}.png", out_dir / f"{name}.json"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    js.write_text(json.dumps(jsonable({"figure": name, "caption": caption, "data": data}), indent=1, allow_nan=False))
    return {"name": name, "png": png.name, "json": js.name, "caption": caption}


def make_figures(run: Run, rec: dict, out_dir: str | Path) -> tuple[list[dict], list[str]]:
    """(figures written, notes on figures left out and why)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs, notes = [], []
    tag = " [REPLAY]" if rec.get("mode") == "replay" else ""
    for g in rec["groups"]:
        figs.append(pareto_figure(rec, g, out_dir, tag))
    f = utilisation_figure(rec, out_dir, tag)
    figs.append(f) if f else notes.append("utilisation vs λ: no dp rows")
    for fn in (decision_boundary_figure, calibration_figure):
        res = fn(run, out_dir, tag)
        figs.append(res) if isinstance(res, dict) else notes.append(res)
    res = cost_model_figure(rec, out_dir, tag)
    figs.append(res) if isinstance(res, dict) else notes.append(res)
    res = projection_figure(rec, out_dir)
    figs.append(res) if isinstance(res, dict) else notes.append(res)
    return figs, notes


# ---------------------------------------------------------------------------------------------------------
def pareto_figure(rec: dict, group: str, out_dir: Path, tag: str = "") -> dict:
    plt = _plt()
    final = rec["stage_names"][-1]
    body = rec["groups"][group]
    rows = [r for r in body["rows"] if r["ablation"] is None and final in r["speedup"]]
    front = set(body["pareto"]["frontier"])
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    data = []
    seen: set[str] = set()
    for r in rows:
        sp, acc = r["speedup"][final], r["accuracy"]
        x, y = sp["mean"], acc["mean"]
        xl, xh = sp["ci_samples"]
        yl, yh = acc["ci_samples"]
        start = r.get("start", 0)
        m, col = START_STYLE if start else POLICY_STYLE.get(r["policy"], ("o", "k"))
        hollow = r["policy"] == "oracle"
        kind = r["policy"] + (f" from {rec['stage_names'][start]}" if start else "")
        ax.errorbar(
            x,
            y,
            xerr=[[max(0, x - xl)], [max(0, xh - x)]],
            yerr=[[max(0, y - yl)], [max(0, yh - y)]],
            fmt=m,
            color=col,
            mfc="none" if hollow else col,
            ms=8 if m == "*" else 6,
            capsize=2,
            lw=0.8,
            label=None if kind in seen else ("oracle (upper bound)" if hollow else kind),
        )
        seen.add(kind)
        if r["label"] in front:
            ax.plot(x, y, "o", ms=13, mfc="none", mec="0.4", lw=0.5)
        if r["policy"] in ("single", "fixed_depth"):  # the other baselines have one point each: the legend names them
            ax.annotate(
                r["label"].replace("single ", "").replace("fixed depth ", "depth "),
                (x, y),
                textcoords="offset points",
                xytext=(5, -10),
                fontsize=7,
                color=col,
            )
        data.append(
            {
                "label": r["label"],
                "policy": r["policy"],
                "param": r["param"],
                "start": start,
                "speedup": x,
                "speedup_ci": [xl, xh],
                "accuracy": y,
                "accuracy_ci": [yl, yh],
                "frontier": r["label"] in front,
            }
        )
    for start in sorted({d["start"] for d in data if d["policy"] == "dp"}):  # one line per first stage
        dps = sorted((d for d in data if d["policy"] == "dp" and d["start"] == start), key=lambda d: float(d["param"]))
        col = START_STYLE[1] if start else POLICY_STYLE["dp"][1]
        ax.plot([d["speedup"] for d in dps], [d["accuracy"] for d in dps], "-", color=col, lw=1, alpha=0.6)
        for d in dps:
            ax.annotate(
                f"λ={fmt_num(d['param'])}",
                (d["speedup"], d["accuracy"]),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=7,
                color=col,
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"speedup over {final} alone (wall-clock, same batch size; log scale)")
    ax.set_ylabel("accuracy (mean task score)")
    title = f"{group} ({len(body['datasets'])} datasets mixed)" if group == ALL else group
    ax.set_title(f"Speed–quality: {title}, {len(rec['seeds'])} seed(s), 95% CIs over samples{tag}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", ncol=2, title="policy (grey ring: Pareto frontier)")
    name = "pareto_" + group.replace("/", "-")
    return _save(
        fig,
        out_dir,
        name,
        data,
        f"Speed–quality Pareto, {title}: every row of the grid with its 95% intervals; dp joined in λ order (one "
        f"line per start stage); grey rings mark the frontier; the oracle is an upper bound.{tag}",
    )


def _from_s0_dp(r: dict) -> bool:
    """A dp or lossless row of the cascade from stage 0, not an ablation."""
    return r["policy"] in ("dp", "lossless") and not r["ablation"] and not r.get("start", 0)


def utilisation_figure(rec: dict, out_dir: Path, tag: str = "") -> dict | None:
    plt = _plt()
    names = rec["stage_names"]
    K = len(names)
    groups = [g for g in rec["groups"] if any(_from_s0_dp(r) for r in rec["groups"][g]["rows"])]
    if not groups:
        return None
    fig, axes = plt.subplots(2, len(groups), figsize=(3.3 * len(groups) + 1, 6.2), squeeze=False, sharey="row")
    data = {}
    for j, g in enumerate(groups):
        rows = sorted(
            (r for r in rec["groups"][g]["rows"] if _from_s0_dp(r)),
            key=lambda r: float(r["param"]),
        )
        lams = [fmt_num(r["param"]) for r in rows]
        ended = np.array([r["utilisation"]["ended"] for r in rows])  # [L, K]
        ran = np.array([r["utilisation"]["ran"] for r in rows])
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        ax = axes[0, j]
        for k in range(K):
            ax.bar(x, ended[:, k], bottom=bottom, label=names[k], color=DECISION_COLOURS[k % 6], width=0.7)
            bottom += ended[:, k]
        ax.set_xticks(x, lams)
        ax.set_title(g if g != ALL else "all datasets", fontsize=10)
        ax2 = axes[1, j]
        for k in range(K):
            ax2.plot(
                x,
                ran[:, k],
                "-",
                marker="osD^v<>"[k % 7],
                ms=9 - 1.5 * (k % 4),
                color=DECISION_COLOURS[k % 6],
                label=names[k],
                alpha=0.85,
            )
        ax2.set_xticks(x, lams)
        ax2.set_xlabel("λ")
        ax2.set_ylim(-0.03, 1.03)
        data[g] = {"lambda": [r["param"] for r in rows], "ended": ended.tolist(), "ran": ran.tolist()}
    axes[0, 0].set_ylabel("fraction ending at the stage")
    axes[1, 0].set_ylabel("fraction running the stage")
    axes[0, -1].legend(title="stage", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Stage utilisation of dp against λ (pooled over seeds){tag}")
    fig.tight_layout()
    return _save(
        fig,
        out_dir,
        "utilisation",
        {"stages": names, "groups": data},
        "Where samples ended (top, stacked) and which stages ran (bottom) under dp, against λ (∞ = lossless).",
    )


def _lam1_cells(run: Run) -> list:
    return [c for c in run.cells if c.policy == "dp" and c.ablation is None and c.lam == 1.0 and c.start == 0]


def decision_boundary_figure(run: Run, out_dir: Path, tag: str = "") -> dict | str:
    plt = _plt()
    if "entropy_mean" not in run.feature_names:
        return "decision boundary: the traces have no entropy_mean feature"
    cells = _lam1_cells(run)
    if not cells:
        return "decision boundary: the run has no dp cell at λ = 1"
    j = run.feature_names.index("entropy_mean")
    dsets = sorted({c.dataset for c in cells})
    fig, axes = plt.subplots(1, len(dsets), figsize=(4.2 * len(dsets) + 1, 4.2), squeeze=False, sharey=True)
    data = {}
    rng = np.random.default_rng(0)
    K = run.K
    for a, ds in enumerate(dsets):
        xs, ys, ds_dec = [], [], []
        for c in cells:
            if c.dataset != ds:
                continue
            d = run.read(c, ("ran", "decision", "predictions", "features"))
            ok = d["ran"][:, 0]
            xs.append(d["features"][ok, 0, j])
            ys.append(d["predictions"][ok, 0, 0])
            ds_dec.append(d["decision"][ok, 0])
        x, y, dec = (np.concatenate(v).astype(np.float64) for v in (xs, ys, ds_dec))
        fin = np.isfinite(x) & np.isfinite(y)
        x, y, dec = x[fin], y[fin], dec[fin].astype(int)
        keep = rng.permutation(x.size)[:4000]
        ax = axes[0, a]
        for v, lab in [(-1, "stop at " + run.stage_names[0])] + [(m, f"→ {run.stage_names[m]}") for m in range(1, K)]:
            m = dec[keep] == v
            if m.any():
                col = DECISION_COLOURS[0] if v == -1 else DECISION_COLOURS[v % 6]
                ax.scatter(x[keep][m], y[keep][m], s=9, alpha=0.6, color=col, label=f"{lab} ({int((dec == v).sum())})")
        ax.set_title(ds, fontsize=10)
        ax.set_xlabel(f"{run.stage_names[0]} mean token entropy (nats)")
        ax.legend(loc="best", title="decision at stage 0", markerscale=1.5)
        ax.grid(alpha=0.3)
        data[ds] = {"entropy_mean": x.tolist(), "r_hat_0": y.tolist(), "decision": dec.tolist()}
    axes[0, 0].set_ylabel("r̂₀: predicted P(stage-0 output = final output)")
    fig.suptitle(f"Decision boundary of dp at λ = 1 (every seed){tag}")
    fig.tight_layout()
    return _save(
        fig,
        out_dir,
        "decision_boundary",
        data,
        "dp at λ = 1: the predictor's r̂₀ against stage 0's mean entropy, coloured by the decision taken.",
    )


def reliability(p: np.ndarray, o: np.ndarray, bins: int = 10) -> dict:
    """Reliability table of predicted probabilities p [n] against 0/1 outcomes o [n] (equal-width bins).

    Returns per bin: count, mean prediction, observed frequency; ECE = Σ_b (n_b/n)·|freq_b − mean_b|; Brier.
    """
    p = np.asarray(p, np.float64)
    o = np.asarray(o, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    cnt = np.bincount(b, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=bins) / cnt
        freq = np.bincount(b, weights=o, minlength=bins) / cnt
    ok = cnt > 0
    ece = float(np.sum(cnt[ok] / cnt.sum() * np.abs(freq[ok] - mean_p[ok]))) if p.size else math.nan
    return {
        "edges": edges.tolist(),
        "count": cnt.tolist(),
        "mean_pred": mean_p.tolist(),
        "freq": freq.tolist(),
        "ece": ece,
        "brier": float(np.mean((p - o) ** 2)) if p.size else math.nan,
        "n": int(p.size),
    }


def calibration_figure(run: Run, out_dir: Path, tag: str = "") -> dict | str:
    plt = _plt()
    cells = _lam1_cells(run)
    if not cells:
        return "calibration: the run has no dp cell at λ = 1"
    per_ds: dict[str, tuple[list, list]] = {}
    for c in cells:
        s0 = run.find(c.dataset, c.seed, "single", 0)
        fin = run.find(c.dataset, c.seed, "single", run.K - 1)
        if s0 is None or fin is None:
            continue
        d = run.read(c, ("ran", "predictions"))
        t0 = run.read(s0, ("tokens",))["tokens"]
        tf = run.read(fin, ("tokens",))["tokens"]
        o = np.array([np.array_equal(a, b) for a, b in zip(t0, tf)], float)
        p = d["predictions"][:, 0, 0].astype(np.float64)
        ok = d["ran"][:, 0] & np.isfinite(p)
        per_ds.setdefault(c.dataset, ([], []))
        per_ds[c.dataset][0].append(p[ok])
        per_ds[c.dataset][1].append(o[ok])
    if not per_ds:
        return "calibration: no outcomes (needs the single-stage cells of stage 0 and the final stage)"
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(6.4, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="0.5", lw=1, label="perfect calibration")
    data = {}
    allp, allo = [], []
    for i, (ds, (ps, os_)) in enumerate(sorted(per_ds.items())):
        p, o = np.concatenate(ps), np.concatenate(os_)
        allp.append(p)
        allo.append(o)
        rel = reliability(p, o)
        data[ds] = rel
        ok = np.array(rel["count"]) > 0
        ax.plot(
            np.array(rel["mean_pred"])[ok],
            np.array(rel["freq"])[ok],
            "o-",
            ms=4,
            lw=1,
            color=DECISION_COLOURS[(i + 1) % 6],
            label=f"{ds} (ECE {rel['ece']:.3f}, n={rel['n']})",
        )
    rel = reliability(np.concatenate(allp), np.concatenate(allo))
    data["all"] = rel
    ok = np.array(rel["count"]) > 0
    ax.plot(
        np.array(rel["mean_pred"])[ok],
        np.array(rel["freq"])[ok],
        "s-",
        color="k",
        lw=2,
        label=f"all (ECE {rel['ece']:.3f}, Brier {rel['brier']:.3f})",
    )
    ax.set_ylabel("observed frequency of o₀ = 1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Calibration of r̂₀ (dp at λ = 1) against stage 0's outcome{tag}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    axh.bar(np.array(rel["edges"][:-1]) + 0.05, rel["count"], width=0.09, color="0.5")
    axh.set_xlabel("r̂₀ (predicted P(stage-0 output = final output))")
    axh.set_ylabel("samples")
    axh.set_xlim(0, 1)
    fig.tight_layout()
    return _save(
        fig,
        out_dir,
        "calibration",
        data,
        "Reliability of r̂₀ against o₀ (stage 0 alone's tokens equal the final stage alone's), 10 bins.",
    )


def cost_model_figure(rec: dict, out_dir: Path, tag: str = "") -> dict | str:
    plt = _plt()
    drift = rec["drift"]
    if not drift.get("applicable"):
        return "cost model vs measured: " + drift.get("reason", "not applicable")
    tabs = drift["tables"]
    fig, axes = plt.subplots(1, len(tabs), figsize=(6 * len(tabs), 5.4), squeeze=False)
    for a, (name, t) in enumerate(tabs.items()):
        ax = axes[0, a]
        pts = t["points"]
        e, m, st = np.array(pts["estimated_s"]), np.array(pts["measured_s"]), np.array(pts["stage"])
        for k, s in enumerate(t["stages"]):
            sel = st == k
            if sel.any():
                lab = f"{s['name']}: measured/est. median {s['ratio_median']:.2f} (n={s['calls']})"
                ax.scatter(
                    e[sel] * 1e3, m[sel] * 1e3, s=8, alpha=0.5, color=DECISION_COLOURS[k % 6], label=lab, zorder=3
                )
        pos = np.concatenate([e[e > 0], m[m > 0]]) * 1e3
        if pos.size:
            lo, hi = pos.min() / 1.5, pos.max() * 1.5
            xs = np.array([lo, hi])
            ax.plot(xs, xs, "k-", lw=1, label="measured = estimated", zorder=2)
            ax.fill_between(xs, xs / 1.15, xs * 1.15, color="0.88", label="±15%", zorder=1)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("estimated by the cost table (ms per call)")
        ax.set_ylabel("measured in the run (ms per call)")
        b = t["batches"]
        ax.set_title(
            f"{name}\nwhole batches: measured/estimated median {b['ratio_median']:.2f}" if b["ratio_median"] else name,
            fontsize=9,
        )
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"Cost model vs measured stage calls{tag}")
    fig.tight_layout()
    return _save(
        fig,
        out_dir,
        "cost_model",
        {k: {"stages": v["stages"], "batches": v["batches"], "points": v["points"]} for k, v in tabs.items()},
        "Every stage call's measured seconds against the estimate of the cost table that priced the run.",
    )


def _projected(table: str, key: str) -> Callable[[dict], dict | None]:
    def get(r: dict) -> dict | None:
        return r["projection"][table][key]

    return get


def projection_figure(rec: dict, out_dir: Path) -> dict | str:
    plt = _plt()
    tables = list(rec["projection"]["tables"])
    if not tables:
        return "projection: no cost table matches the run's stages"
    g = ALL if ALL in rec["groups"] else next(iter(rec["groups"]))
    rows = [
        r for r in rec["groups"][g]["rows"] if r["ablation"] is None and r["policy"] != "oracle" and "projection" in r
    ]
    if not rows:
        return "projection: no rows"
    final = rec["stage_names"][-1]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) + 3), 5))
    x = np.arange(len(rows))
    series: list[tuple[str, Callable[[dict], dict | None], str]] = [
        ("measured (run)", lambda r: r["speedup"].get(final), "0.3")
    ]
    cols = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    same = []  # tables whose stages all run on one device: GPU-seconds = wall-clock, drawn once
    for i, t in enumerate(tables):
        one = all(d == 1 for d in rec["projection"]["tables"][t]["devices"])
        series.append(
            (
                f"{t}: wall-clock" + (" = GPU-s (1 device each)" if one else ""),
                _projected(t, "wall_speedup"),
                cols[(2 * i) % 4],
            )
        )
        if one:
            same.append(t)
        else:
            series.append((f"{t}: GPU-seconds", _projected(t, "gpu_speedup"), cols[(2 * i + 1) % 4]))
    w = 0.8 / len(series)
    data: dict[str, Any] = {"rows": [r["label"] for r in rows], "one_device_tables": same}
    for i, (name, get, col) in enumerate(series):
        vals = [get(r) for r in rows]
        mean = np.array([v["mean"] if v else np.nan for v in vals])
        lo = np.array([v["ci_samples"][0] if v else np.nan for v in vals])
        hi = np.array([v["ci_samples"][1] if v else np.nan for v in vals])
        ax.bar(
            x + (i - (len(series) - 1) / 2) * w,
            mean,
            w,
            color=col,
            label=name,
            yerr=[np.maximum(0, mean - lo), np.maximum(0, hi - mean)],
            capsize=1.5,
            error_kw={"lw": 0.6},
        )
        data[name] = {"mean": mean.tolist(), "ci_samples": [lo.tolist(), hi.tolist()]}
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, [r["label"] for r in rows], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(f"speedup over {final} alone")
    ax.set_title(
        f"PROJECTION at Qwen2.5 scale ({g}): the run's recorded routes re-priced with measured GPU cost tables"
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(
        fig,
        out_dir,
        "projection",
        data,
        "PROJECTION: speedup over the final stage alone if the recorded routes ran on the 7B→72B hierarchy "
        "(wall-clock and GPU-seconds), next to the speedup measured in the run.",
    )
