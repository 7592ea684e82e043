"""``asd report TRACES.h5 [--plot OUT.png] [--json OUT.json]``: summary tables (and a plot) of a run's traces."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="summarise a trace file: scores per dataset, where samples ended",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("traces", help="a (merged) trace file, e.g. runs/demo-testbed/traces.h5")
    p.add_argument("--plot", default=None, help="write a PNG figure here")
    p.add_argument("--json", default=None, help="write the summary (with the traces' provenance) here")
    p.set_defaults(func=main)


def main(args) -> int:
    from pathlib import Path

    from asd.report.summary import format_summary, plot_summary, summarize
    from asd.traces import read_traces

    if not Path(args.traces).is_file():
        raise FileNotFoundError(f"{args.traces}: no such trace file")
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
