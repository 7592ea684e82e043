"""``asd report RUN`` (an evaluation run folder) or ``asd report TRACES.h5 [--plot PNG] [--json FILE]``.

Given a run folder (grid.json + cells/): writes RUN/report.md and RUN/report.json with the figures in
RUN/figures/ (asd.analysis.report; the analysis is recomputed when RUN/analysis.json is missing or stale).
Given one trace file: summary tables (and a plot) of that file.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="report of an evaluation run folder, or a summary of one trace file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("traces", metavar="RUN|TRACES", help="an evaluation run folder, or a (merged) trace file")
    p.add_argument("--plot", default=None, help="trace file: write a PNG figure here")
    p.add_argument("--json", default=None, help="trace file: write the summary (with the traces' provenance) here")
    p.add_argument("--resamples", type=int, default=5000, help="run folder: bootstrap resamples (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="run folder: seed of the bootstrap resampling")
    p.add_argument(
        "--projection-table",
        action="append",
        default=None,
        metavar="JSON",
        help="run folder: GPU cost table for the projection (repeatable; default: configs/costs)",
    )
    p.add_argument(
        "--drift-table",
        default=None,
        metavar="JSON",
        help="run folder: compare the calls with this table where no cell recorded one",
    )
    p.set_defaults(func=main)


def main(args) -> int:
    from pathlib import Path

    if Path(args.traces).is_dir():
        return _run_report(args)
    return _trace_report(args)


def _run_report(args) -> int:
    from pathlib import Path

    from asd.analysis.report import write_report
    from asd.commands.analyze import config_from
    from asd.tracking import log_artifact

    if args.plot or args.json:
        raise ValueError("--plot and --json apply to a trace file; a run folder's report goes to RUN/report.md/.json")
    args.run = args.traces
    out = write_report(args.traces, config_from(args), progress=True)
    root = Path(out["run"])
    for name in ("report.md", "report.json", "analysis.json"):
        log_artifact(str(root / name), "report")
    print(f"report: {root / 'report.md'} ({len(out['figures'])} figures in {root / 'figures'})")
    if out["figure_notes"]:
        print("not drawn: " + "; ".join(out["figure_notes"]))
    return 0


def _trace_report(args) -> int:
    from pathlib import Path

    from asd.report.summary import format_summary, plot_summary, summarize
    from asd.traces import read_traces

    if not Path(args.traces).is_file():
        raise FileNotFoundError(f"{args.traces}: no such trace file or run folder")
    fields = ["dataset", "score", "final_stage", "ran", "draft_len", "accepted_len", "latency_s"]
    tr = read_traces(args.traces, fields=fields)
    K = int(tr.data["ran"].shape[1])
    models = tr.attrs.get("models") or []
    names = [m.get("name", f"stage{k}") if isinstance(m, dict) else str(m) for k, m in enumerate(models)]
    if len(names) != K:
        names = [f"stage{k}" for k in range(K)]
    s = summarize(tr.data, K)
    from asd.tracking import log_artifact, log_section

    log_artifact(args.traces, "traces")
    log_section("Summary", f"{args.traces}: {s['n']} samples, stages {names}", data=s)
    print(f"{args.traces}: git {tr.attrs.get('git_revision')}, λ={tr.attrs.get('lam')}, seed={tr.attrs.get('seed')}")
    print(format_summary(s, names))
    if args.plot:
        plot_summary(s, names, args.plot, title=f"{Path(args.traces).parent.name} (λ={tr.attrs.get('lam')})")
        print(f"plot: {args.plot}")
        log_artifact(args.plot, "plot")
    if args.json:
        rec = {
            "summary": s,
            "traces": str(args.traces),
            "provenance": {k: tr.attrs.get(k) for k in ("git_revision", "schema_version", "config", "seed", "lam")},
        }
        Path(args.json).write_text(json.dumps(rec, indent=1, default=str))
        log_artifact(args.json, "report")
    return 0
