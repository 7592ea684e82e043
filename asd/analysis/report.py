"""``asd report RUN``: RUN/report.md and RUN/report.json from the analysis, with the figures in RUN/figures/.

The analysis (RUN/analysis.json) is recomputed when it is missing or was computed from another grid.json
(its ``grid_sha256``). report.md holds the headline table (the datasets mixed), one table per dataset, the
ablations, the paired tests, utilisation, regret, the Pareto frontier and which baselines no dp point
matches, the cost-model drift, the Qwen2.5-scale projection (labelled as such) and, where RUN/replay/*.json
exist, the one-GPU replay; then the environment, config, seeds and git revisions. report.json holds the same
numbers (the analysis record) plus the figure list and provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from asd.analysis.analyze import ALL, AnalysisConfig, analyze, headline, jsonable

REPORT_SCHEMA_VERSION = 1


def grid_sha256(root: Path) -> str:
    return hashlib.sha256((Path(root) / "grid.json").read_bytes()).hexdigest()


def write_json(path: Path, rec: Any) -> None:
    """Atomic JSON write (temporary name, then rename): a reader never sees half a file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(jsonable(rec), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def run_analysis(root: str | Path, cfg: AnalysisConfig | None = None, progress: bool = False) -> tuple[Any, dict]:
    """(run, analysis record): checks the folder first (nothing written on bad input), then analyses."""
    from asd.analysis.run import load_run

    run = load_run(root)
    rec = analyze(run, cfg, progress=progress)
    rec["grid_sha256"] = grid_sha256(run.root)
    return run, rec


def load_or_analyze(root: str | Path, cfg: AnalysisConfig | None = None, progress: bool = False):
    """(run, analysis, recomputed?): RUN/analysis.json if it belongs to this grid.json, else a fresh analysis."""
    from asd.analysis.run import load_run

    root = Path(root)
    run = load_run(root)
    p = root / "analysis.json"
    if p.is_file():
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and rec.get("grid_sha256") == grid_sha256(root) and rec.get("schema_version") == 1:
            return run, rec, False
    rec = analyze(run, cfg, progress=progress)
    rec["grid_sha256"] = grid_sha256(run.root)
    write_json(p, rec)
    return run, rec, True


def write_report(root: str | Path, cfg: AnalysisConfig | None = None, progress: bool = False) -> dict:
    """Write RUN/report.md, RUN/report.json and RUN/figures/*; returns the report record."""
    from asd.analysis.figures import make_figures
    from asd.provenance import provenance

    run, rec, fresh = load_or_analyze(root, cfg, progress)
    folder: Path = run.root
    figs, fig_notes = make_figures(run, rec, folder / "figures")
    replay = _replays(folder)
    md = render_markdown(run, rec, figs, fig_notes, replay)
    (folder / "report.md").write_text(md)
    out = {
        "schema": "asd-report",
        **provenance(config=run.grid.get("config"), schema_version=REPORT_SCHEMA_VERSION),
        "run": str(folder),
        "mode": rec["mode"],
        "label": rec.get("label"),
        "seeds": rec["seeds"],
        "datasets": rec["datasets"],
        "run_git_revision": rec.get("run_git_revision"),
        "environment_of_run": _run_environment(run),
        "figures": [{**f, "png": f"figures/{f['png']}", "json": f"figures/{f['json']}"} for f in figs],
        "figure_notes": fig_notes,
        "headline": headline(rec),
        "replay": replay,
        "analysis": rec,
        "analysis_recomputed": fresh,
    }
    write_json(folder / "report.json", out)
    return out


def _run_environment(run) -> dict:
    a = run.attrs[run.cells[0].id]
    return {"environment": a.get("environment"), "git_revision": a.get("git_revision"), "models": a.get("models")}


def _replays(root: Path) -> list[dict]:
    out = []
    for p in sorted((root / "replay").glob("*.json")) if (root / "replay").is_dir() else []:
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and r.get("schema") == "asd-gpu-replay":
            keys = ("summary", "device", "label", "git_revision", "calls_run_git_revision", "by_stage")
            out.append({"file": str(p.relative_to(root)), **{k: r.get(k) for k in keys}})
    return out


def _replay_lines(r: dict, run_revision: str | None) -> list[str]:
    """One replay record as a sentence and a per-stage table (measured vs the table's estimate, seconds)."""
    s = r.get("summary") or {}
    if not s.get("replayed_calls"):
        return [f"- `{r['file']}` on {r.get('device')}: no call replayed."]
    within = "yes" if s.get("within_15_percent") else "no"
    calls_rev = r.get("calls_run_git_revision")
    if calls_rev is None:
        whose = "the run the calls came from is not recorded in the file"
    elif run_revision is not None and str(calls_rev)[:7] == str(run_revision)[:7]:
        whose = f"the calls of this run (revision `{calls_rev}`)"
    else:
        whose = f"the calls of **another run** (revision `{calls_rev}`; this run: `{run_revision}`)"
    skipped = [str(b["stage"]) for b in r.get("by_stage") or [] if b.get("skipped_calls")]
    where = f": stage {', '.join(skipped)}" if skipped else ""
    L = [
        f"- `{r['file']}` on {r.get('device')} (revision `{r.get('git_revision')}`), {whose}: "
        f"{s['replayed_calls']} calls replayed, measured {_f(s.get('measured_s'), 2, ' s')} vs "
        f"{_f(s.get('estimated_s'), 2, ' s')} estimated, ratio **{_f(s.get('measured_over_estimated'))}** "
        f"(within 15%: {within}); {s.get('not_replayed_calls', 0)} calls not replayed "
        f"({_f(s.get('not_replayed_estimated_s'), 2, ' s')} estimated{where}).",
    ]
    rows = [b for b in r.get("by_stage") or [] if b.get("replayed_calls")]
    if rows:
        L += [
            "",
            "| stage | model | calls | measured | estimated | ratio | median per call [q1, q3] |",
            "|---|---|---|---|---|---|---|",
        ]
        for b in rows:
            L.append(
                f"| {b['stage']} | {b.get('model')} | {b['replayed_calls']} | {_f(b.get('measured_s'), 2, ' s')} | "
                f"{_f(b.get('estimated_s'), 2, ' s')} | {_f(b.get('ratio_total'))} | {_f(b.get('ratio_median'))} "
                f"[{_f(b.get('ratio_q1'))}, {_f(b.get('ratio_q3'))}] |"
            )
    return L


# ---------------------------------------------------------------------------------------------------------
def _f(x, nd=3, unit="") -> str:
    return "—" if x is None else f"{x:.{nd}f}{unit}"


def _ci(b: dict | None, nd=3, unit="", which="ci_samples") -> str:
    if not b or b.get("mean") is None:
        return "—"
    ci = b.get(which)
    if not ci or ci[0] is None:
        return f"{b['mean']:.{nd}f}{unit}"
    return f"{b['mean']:.{nd}f}{unit} [{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def _p(t: dict | None) -> str:
    if not t:
        return "—"
    return f"{t['pvalue']:.2g} / {t.get('p_holm', float('nan')):.2g}"


def _main_table(rec: dict, group: str, ablations: bool) -> list[str]:
    g = rec["groups"][group]
    fin = rec["stage_names"][-1]
    lines = [
        f"| row | accuracy [CI samples] | CI seeds | Δ acc vs {fin} [CI] | speedup vs {fin} [CI samples] | CI seeds "
        f"| speedup vs lossless | ms/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in g["rows"]:
        if bool(r["ablation"]) != ablations:
            continue
        acc, sp = r["accuracy"], r["speedup"].get(fin)
        seeds_ci = acc.get("ci_seeds")
        sp_seeds = sp.get("ci_seeds") if sp else None
        lines.append(
            f"| {r['label']} | {_ci(acc)} | {_rng(seeds_ci, 3)} | {_ci(r.get('accuracy_diff_vs_final'))} "
            f"| {_ci(sp, 2, '×')} | {_rng(sp_seeds, 2)} | {_ci(r['speedup'].get('lossless'), 2, '×')} "
            f"| {_f(r['latency_ms'], 2)} |"
        )
    return lines


def _rng(ci, nd) -> str:
    return "—" if not ci or ci[0] is None else f"[{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def _level_slice(rec: dict) -> str:
    """The words that name a run's slice of the testbed's levels, e.g. ' (testbed levels 1, 2, 3 only)', when it drew
    its testbed prompts from some of the levels (``evaluation.levels``), else '': a slice must not read as the
    study's mix."""
    from asd.testbed.tasks import LEVELS

    ev = (rec.get("config") or {}).get("evaluation") or {}
    levels = ev.get("levels")
    if ev.get("source", "testbed") != "testbed" or not levels or sorted(levels) == list(LEVELS):
        return ""
    return f" (testbed levels {', '.join(map(str, levels))} only)"


def render_markdown(run, rec: dict, figs: list[dict], fig_notes: list[str], replay: list[dict]) -> str:
    names = rec["stage_names"]
    replay_tag = " — REPLAY (counterfactual, from full per-stage traces)" if rec["mode"] == "replay" else ""
    L: list[str] = [f"# Evaluation report: {run.root.name}{replay_tag}", ""]
    if rec.get("run_label"):
        L += [
            f"**Label: {rec['run_label']}** (the run's own label, e.g. a plumbing run whose scores mean nothing).",
            "",
        ]
    L += [
        f"- run folder: `{run.root}`; mode **{rec['mode']}**; {rec['cells']} cells; K = {rec['K']} stages "
        f"({', '.join(names)})",
        f"- datasets: {', '.join(rec['datasets'])}{_level_slice(rec)}; seeds: {', '.join(map(str, rec['seeds']))}",
        f"- run wall time {_f(rec.get('wall_time_s'), 1, ' s')}"
        + (f" (over {rec['invocations']} invocations of asd evaluate)" if (rec.get("invocations") or 0) > 1 else "")
        + f", CPU-hours {_f(rec.get('cpu_hours'), 3)}, "
        f"GPU-hours {_f(rec.get('gpu_hours'), 3)}",
        f"- git revision of the run: `{rec.get('run_git_revision')}`; of this analysis: `{rec.get('git_revision')}`",
        f"- intervals: {int(rec['options']['level'] * 100)}% percentile bootstrap, {rec['options']['resamples']} "
        f"resamples, seed {rec['options']['seed']}; methods in docs/analysis.md",
        f"- per-sample latency: {', '.join(rec['latency_method'])} (see docs/analysis.md#latency)",
        "",
    ]
    groups = list(rec["groups"])
    head = ALL if ALL in rec["groups"] else groups[0]
    title = ("the datasets mixed" if head == ALL else head) + _level_slice(rec)
    L += [f"## Headline: {title}", "", *_main_table(rec, head, False), ""]
    L += _headline_sentences(rec, head)
    for f in figs:
        if f["name"] == "pareto_" + head.replace("/", "-"):
            L += [f"![{f['caption']}](figures/{f['png']})", "", f"*{f['caption']}* Data: `figures/{f['json']}`.", ""]
    for g in groups:
        if g == head:
            continue
        L += [f"## {g}", "", *_main_table(rec, g, False), ""]
    abl = any(r["ablation"] for r in rec["groups"][head]["rows"])
    if abl:
        L += ["## Ablations", ""]
        for g in groups:
            if any(r["ablation"] for r in rec["groups"][g]["rows"]):
                L += [f"### {g}", "", *_main_table(rec, g, True), ""]
    L += _tests_section(rec, head)
    L += _utilisation_section(rec, head)
    L += _regret_section(rec, head)
    L += _pareto_section(rec)
    L += ["## Figures", ""]
    for f in figs:
        L += [
            f"### {f['name']}",
            "",
            f"![{f['caption']}](figures/{f['png']})",
            "",
            f"*{f['caption']}* Data: `figures/{f['json']}`.",
            "",
        ]
    for n in fig_notes:
        L += [f"- not drawn: {n}"]
    if fig_notes:
        L.append("")
    L += _drift_section(rec)
    L += _projection_section(rec, head, replay)
    L += _provenance_section(run, rec)
    if rec.get("notes"):
        L += ["## Notes", "", *[f"- {n}" for n in rec["notes"]], ""]
    return "\n".join(L) + "\n"


def _headline_sentences(rec: dict, g: str) -> list[str]:
    fin = rec["stage_names"][-1]
    rows = {r["label"]: r for r in rec["groups"][g]["rows"]}
    dp1 = next(
        (
            r
            for r in rec["groups"][g]["rows"]
            if r["policy"] == "dp" and r["ablation"] is None and r["param"] == 1.0 and not r.get("start", 0)
        ),
        None,
    )
    if not dp1 or fin not in dp1["speedup"]:
        return []
    sp, d = dp1["speedup"][fin], dp1.get("accuracy_diff_vs_final") or {}
    lo = d.get("ci_samples", [None, None])
    loss_hi = None if lo[0] is None else -lo[0]
    out = [
        f"dp at λ = 1 is **{sp['mean']:.2f}×** as fast as {fin} alone (95% CI {sp['ci_samples'][0]:.2f}–"
        f"{sp['ci_samples'][1]:.2f} over samples) with an accuracy difference of "
        f"**{100 * d.get('mean', float('nan')):+.1f} points** "
        f"(CI {100 * (lo[0] or 0):+.1f} to {100 * (lo[1] or 0):+.1f}; "
        f"the loss's upper bound is {'—' if loss_hi is None else _pts(loss_hi)} points).",
    ]
    ll = dp1["speedup"].get("lossless")
    if ll:
        out.append(
            f"Against the lossless cascade it is {ll['mean']:.2f}× as fast (CI {ll['ci_samples'][0]:.2f}–"
            f"{ll['ci_samples'][1]:.2f})."
        )
    _ = rows
    best = _best_within_bound(rec, g)
    if best is not None:
        out.append(best)
    return [" ".join(out), ""]


LOSS_BOUND, LOSS_UPPER_BOUND = 0.01, 0.015  # the study's accuracy bound: ≤ 1 point lost, upper 95% bound ≤ 1.5


def within_bound(loss: float, loss_upper: float) -> bool:
    """Whether an accuracy loss (a fraction, e.g. 0.004) and its upper 95% bound stay within the study's bound."""
    return loss <= LOSS_BOUND + 1e-12 and loss_upper <= LOSS_UPPER_BOUND + 1e-12


def _best_within_bound(rec: dict, g: str) -> str | None:
    """A sentence on the fastest dp row (any λ, any start stage) within the accuracy bound, or on there being none."""
    fin = rec["stage_names"][-1]
    ok = []
    for r in rec["groups"][g]["rows"]:
        d = r.get("accuracy_diff_vs_final") or {}
        if r["policy"] != "dp" or r["ablation"] or fin not in r["speedup"] or d.get("mean") is None:
            continue
        lo = d["ci_samples"][0]
        if lo is not None and within_bound(-d["mean"], -lo):
            ok.append(r)
    if not ok:
        return (
            f"No dp row stays within the accuracy bound (≤ {_pts(LOSS_BOUND)} point lost against {fin} alone, "
            f"the loss's upper 95% bound ≤ {_pts(LOSS_UPPER_BOUND)})."
        )
    r = max(ok, key=lambda r: r["speedup"][fin]["mean"])
    sp, d = r["speedup"][fin], r["accuracy_diff_vs_final"]
    return (
        f"The fastest dp row within the accuracy bound (≤ {_pts(LOSS_BOUND)} point lost, upper 95% bound ≤ "
        f"{_pts(LOSS_UPPER_BOUND)}) is **{r['label']}: {sp['mean']:.2f}×** (CI {sp['ci_samples'][0]:.2f}–"
        f"{sp['ci_samples'][1]:.2f}) for {_pts(-d['mean'])} points (upper bound {_pts(-d['ci_samples'][0])})."
    )


def _pts(x: float) -> str:
    """Points (×100, one decimal) without a "-0.0"."""
    s = f"{100 * x:.1f}"
    return "0.0" if s == "-0.0" else s


def _tests_section(rec: dict, g: str) -> list[str]:
    L = [
        f"## Paired tests ({g})",
        "",
        "p-values raw / Holm-adjusted (family: every row of the group against the same reference, same metric). "
        "Accuracy: exact McNemar (a/b = pairs only the row / only the reference got right); latency: Wilcoxon "
        "signed-rank (unit: batch when both cells ran the same batches, else sample).",
        "",
        "| row | vs final: accuracy | a/b | vs final: latency (unit) | vs lossless: accuracy | vs lossless: latency |",
        "|---|---|---|---|---|---|",
    ]
    for r in rec["groups"][g]["rows"]:
        t1, t2 = r["tests"].get("vs_final") or {}, r["tests"].get("vs_lossless") or {}
        a = t1.get("accuracy") or {}
        ab = f"{a.get('a_only', '—')}/{a.get('b_only', '—')}" if a.get("test") == "mcnemar_exact" else "—"
        lat = t1.get("latency")
        L.append(
            f"| {r['label']} | {_p(t1.get('accuracy'))} | {ab} | {_p(lat)}{' (' + lat['unit'] + ')' if lat else ''} "
            f"| {_p(t2.get('accuracy'))} | {_p(t2.get('latency'))} |"
        )
    return [*L, ""]


def _utilisation_section(rec: dict, g: str) -> list[str]:
    names = rec["stage_names"]
    L = [
        f"## Stage utilisation ({g})",
        "",
        "Fraction of samples ending at each stage / running each stage.",
        "",
        "| row | " + " | ".join(f"ended {n}" for n in names) + " | " + " | ".join(f"ran {n}" for n in names) + " |",
        "|---|" + "---|" * (2 * len(names)),
    ]
    for r in rec["groups"][g]["rows"]:
        u = r["utilisation"]
        L.append(
            f"| {r['label']} | "
            + " | ".join(f"{v:.3f}" for v in u["ended"])
            + " | "
            + " | ".join(f"{v:.3f}" for v in u["ran"])
            + " |"
        )
    return [*L, ""]


def _regret_section(rec: dict, g: str) -> list[str]:
    rows = [r for r in rec["groups"][g]["rows"] if r.get("regret")]
    if not rows:
        return []
    L = [
        f"## Regret against the oracle ({g})",
        "",
        "Accuracy regret = accuracy(oracle) − accuracy(row); objective regret = J(row) − J(oracle), "
        "J = λ·(1 − agreement with the final stage alone) + latency relative to the final stage alone.",
        "",
        "| row | accuracy regret [CI] | objective regret [CI] |",
        "|---|---|---|",
    ]
    for r in rows:
        L.append(f"| {r['label']} | {_ci(r['regret']['accuracy'])} | {_ci(r['regret']['objective'])} |")
    return [*L, ""]


def _pareto_section(rec: dict) -> list[str]:
    L = ["## Pareto frontier and baselines", ""]
    for g, body in rec["groups"].items():
        L.append(f"- **{g}**: frontier (slow → fast): {', '.join(body['pareto']['frontier']) or '—'}")
        miss = [c["baseline"] for c in body["coverage"] if not c["covered"]]
        L.append(
            "  - every baseline is matched by a dp point within the intervals"
            if not miss
            else "  - baselines no dp point matches (faster or more accurate beyond the dp intervals): "
            + ", ".join(miss)
        )
    return [*L, ""]


def _drift_section(rec: dict) -> list[str]:
    d = rec["drift"]
    L = ["## Cost model vs measured latencies", ""]
    if not d.get("applicable"):
        return [*L, f"Not applicable: {d.get('reason')}.", ""]
    for name, t in d["tables"].items():
        L += [
            f"Table `{name}`:",
            "",
            "| stage | calls | measured / estimated (median [IQR]) | measured s | estimated s |",
            "|---|---|---|---|---|",
        ]
        for s in t["stages"]:
            if not s["calls"]:
                L.append(f"| {s['name']} | 0 | — | — | — |")
                continue
            L.append(
                f"| {s['name']} | {s['calls']} | {s['ratio_median']:.3f} [{s['ratio_q1']:.3f}, "
                f"{s['ratio_q3']:.3f}] | {s['measured_s']:.3f} | {s['estimated_s']:.3f} |"
            )
        b = t["batches"]
        L += [
            "",
            f"Whole batches (wall-clock incl. decisions vs summed call estimates): median ratio "
            f"{_f(b['ratio_median'])}, {b['n']} batches.",
            "",
        ]
    return L


def _projection_section(rec: dict, g: str, replay: list[dict]) -> list[str]:
    tabs = rec["projection"]["tables"]
    L = ["## PROJECTION at Qwen2.5 scale", ""]
    if not tabs:
        return [*L, "No cost table matches the run's stages.", ""]
    L += [
        "**This is a projection, not a measurement.** Each sample's recorded route (stages run, tokens generated, "
        "tokens verified, batch) is re-priced with a measured GPU cost table (the stages mapped in order onto "
        "the table's models); the speedups are those the same decisions would have on that hierarchy. "
        "Wall-clock: the priced calls in sequence; GPU-seconds: each call's seconds × the devices its stage runs on.",
        "",
    ]
    for name, t in tabs.items():
        L.append(f"- `{name}`: stages {', '.join(t['stages'])}, devices {t['devices']}, measured on {t['measured_on']}")
    L.append("")
    fin = rec["stage_names"][-1]
    head = "| row | measured speedup | " + " | ".join(f"{n}: wall-clock | {n}: GPU-s" for n in tabs) + " |"
    L += [f"Speedup over {fin} alone ({g}), 95% CI over samples:", "", head, "|---|---|" + "---|---|" * len(tabs)]
    for r in rec["groups"][g]["rows"]:
        if r["ablation"] or "projection" not in r:
            continue
        cells = [
            f"{_ci(r['projection'][n]['wall_speedup'], 2, '×')} | {_ci(r['projection'][n]['gpu_speedup'], 2, '×')}"
            for n in tabs
        ]
        L.append(f"| {r['label']} | {_ci(r['speedup'].get(fin), 2, '×')} | " + " | ".join(cells) + " |")
    L.append("")
    if replay:
        L += ["### One-GPU replay (measured vs the table's estimate)", ""]
        for r in replay:
            L += [*_replay_lines(r, rec.get("run_git_revision")), ""]
    else:
        L += ["No one-GPU replay in `replay/` yet (scripts/gpu_replay.py writes one; docs/analysis.md#replay).", ""]
    return L


def _provenance_section(run, rec: dict) -> list[str]:
    env = _run_environment(run)
    L = [
        "## Environment, config, seeds",
        "",
        f"- seeds: {rec['seeds']}; datasets: {rec['datasets']}; stages: {rec['stage_names']}",
        f"- run git revision: `{rec.get('run_git_revision')}`; traces written at `{env.get('git_revision')}`; "
        f"analysis at `{rec.get('git_revision')}` ({rec.get('created_utc')})",
        "",
        "Environment of the run (first cell's traces):",
        "",
        "```json",
        json.dumps(env.get("environment"), indent=1, default=str),
        "```",
        "",
        "Environment of the analysis:",
        "",
        "```json",
        json.dumps(rec.get("environment"), indent=1, default=str),
        "```",
        "",
        "Config (grid.json):",
        "",
        "```json",
        json.dumps(run.grid.get("config"), indent=1, default=str),
        "```",
        "",
    ]
    return L
