"""Where to start, measured online: dp from stage 0 against dp from a later stage, from `asd analyze` records.

Reads one or more analysis.json files of evaluation runs with ``evaluation.starts`` (e.g. the two runs of
configs/evaluation_device_start.yaml and configs/evaluation_device_start_frontier.yaml), takes from the mixed
group (``all``) every dp row (by start stage) and every single stage, and draws the accuracy loss against the
final stage alone (points, paired 95% CI over samples) against the speedup over the final stage alone (95% CI
over samples). Speedups compare within a run: each is measured against the final stage alone of its own run,
so the figure marks each run with its own marker. Writes a PNG and its data as JSON (with the inputs' sha256,
the git revision and a schema version):

    python scripts/start_online_figure.py results/experiments/testbed_start/analysis.json \
        results/experiments/testbed_start/frontier/analysis.json --out results/experiments/testbed_start/start_online
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKERS = "o^sDv"
STYLE = {0: ("tab:blue", "dp from s0"), 2: ("tab:green", "dp from s2"), 1: ("tab:olive", "dp from s1")}


def rows_of(rec: dict, run: int, speed_ci: str = "samples") -> list[dict]:
    """The mixed group's dp and single rows as points: loss (points) and speedup vs the final stage, with CIs
    (the speedup's over samples or over the seed means: ``speed_ci``)."""
    final = rec["stage_names"][-1]
    out = []
    for r in rec["groups"]["all"]["rows"]:
        if r["ablation"] or r["policy"] not in ("dp", "single") or final not in r["speedup"]:
            continue
        d = r.get("accuracy_diff_vs_final")
        if not d or d["mean"] is None:
            continue
        sp = r["speedup"][final]
        out.append(
            {
                "run": run,
                "label": r["label"],
                "policy": r["policy"],
                "param": r["param"],
                "start": r.get("start", 0),
                "loss_points": -100 * d["mean"],
                "loss_ci95": sorted(-100 * x for x in d["ci_samples"]),
                "speedup": sp["mean"],
                "speedup_ci95": sp[f"ci_{speed_ci}"],
                "accuracy": r["accuracy"]["mean"],
                "seeds": len(r["seeds"]),
                "samples": rec["config"]["evaluation"]["samples"],  # prompts per cell (dataset and seed)
                "ended": r["utilisation"]["ended"],
            }
        )
    return out


def draw(
    points: list[dict],
    runs: list[str],
    path: Path,
    title: str = "Where to start, measured online",
    speed_ci: str = "samples",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    by_run = len({p["start"] for p in points if p["policy"] == "dp"}) == 1  # one start: a colour per run
    for i in range(len(runs)):
        mk = MARKERS[i % len(MARKERS)]
        for start in sorted({p["start"] for p in points if p["run"] == i and p["policy"] == "dp"}):
            col, name = STYLE.get(start, ("tab:purple", f"dp from s{start}"))
            col = f"C{i}" if by_run else col
            ps = sorted(
                (p for p in points if p["run"] == i and p["policy"] == "dp" and p["start"] == start),
                key=lambda p: float(p["param"]),
            )
            if by_run:  # the run's frontier in λ order
                ax.plot([p["loss_points"] for p in ps], [p["speedup"] for p in ps], "-", color=col, lw=0.6, alpha=0.6)
            for p in ps:
                ax.errorbar(
                    p["loss_points"],
                    p["speedup"],
                    xerr=[[p["loss_points"] - p["loss_ci95"][0]], [p["loss_ci95"][1] - p["loss_points"]]],
                    yerr=[[p["speedup"] - p["speedup_ci95"][0]], [p["speedup_ci95"][1] - p["speedup"]]],
                    fmt=mk,
                    color=col,
                    ms=5,
                    capsize=2,
                    lw=0.8,
                    label=f"{name} ({runs[i]})" if p is ps[0] else None,
                )
                ax.annotate(
                    f"λ={p['param']:g}",
                    (p["loss_points"], p["speedup"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=col,
                )
        for p in points:
            if p["run"] == i and p["policy"] == "single" and 0 < p["loss_points"] < 12:
                ax.plot(p["loss_points"], p["speedup"], mk, color="black", mfc="none", ms=7)
                ax.annotate(
                    f"{p['label']} ({runs[i]})",
                    (p["loss_points"], p["speedup"]),
                    textcoords="offset points",
                    xytext=(5, -10),
                    fontsize=7,
                )
    ax.axhline(3.0, color="r", ls="--", lw=0.8, label="target: 3× ...")
    ax.axvline(1.0, color="r", ls=":", lw=0.8, label="... at ≤ 1 point lost")
    ax.set_xlim(-0.5, 12)
    shown = [p["speedup_ci95"][1] for p in points if p["loss_points"] < 12]  # the points inside the x range
    ax.set_ylim(1.0, max([4.2] + [1.05 * v for v in shown]))
    ax.set_xlabel("accuracy lost vs the final stage alone (points; 95% CI over samples)")
    ax.set_ylabel(f"speedup over the final stage alone (wall-clock; 95% CI over {speed_ci})")
    seeds = sorted({p["seeds"] for p in points})
    samples = sorted({p["samples"] for p in points})
    ax.set_title(
        f"{title} (4 formats mixed, {'/'.join(map(str, seeds))} seeds, {'/'.join(map(str, samples))} prompts per cell)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path.with_suffix(".png"), dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("analyses", nargs="+", help="analysis.json of runs with dp from several start stages")
    ap.add_argument("--out", required=True, help="path without suffix: writes .png and .json")
    ap.add_argument("--names", nargs="+", help="one name per run for the legend (default: run 1, run 2, ...)")
    ap.add_argument("--title", default="Where to start, measured online")
    ap.add_argument(
        "--speed-ci",
        choices=("samples", "seeds"),
        default="samples",
        help="the speedup's 95%% CI: over samples (default) or over the seed means (a pooled run analysed with "
        "batch shares has point intervals over samples)",
    )
    args = ap.parse_args(argv)
    names = args.names or [f"run {i + 1}" for i in range(len(args.analyses))]
    if len(names) != len(args.analyses):
        print(f"--names: {len(names)} names for {len(args.analyses)} runs", file=sys.stderr)
        return 2
    points, inputs = [], []
    for i, a in enumerate(args.analyses):
        try:
            rec = json.loads(Path(a).read_text())
            points += rows_of(rec, i, args.speed_ci)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{a}: not an asd analysis record ({e})", file=sys.stderr)
            return 2
        inputs.append(
            {
                "path": a,
                "sha256": hashlib.sha256(Path(a).read_bytes()).hexdigest(),
                "run": rec.get("run"),
                "run_git_revision": rec.get("run_git_revision"),
                "analysis_git_revision": rec.get("git_revision"),
            }
        )
    from asd.provenance import provenance

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw(points, names, out, args.title, args.speed_ci)
    record = {
        "what": "dp from each start stage and the single stages of each run: accuracy lost vs the final stage alone "
        "and speedup over it, with 95% CIs (loss: over samples; speedup: over `speed_ci`); speedups compare within "
        "a run",
        "speed_ci": args.speed_ci,
        "inputs": [{**x, "name": n} for x, n in zip(inputs, names)],
        "points": points,
        "provenance": provenance(),
        "schema_version": 1,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')} ({len(points)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
