"""``asd analyze RUN``: statistics of an evaluation run folder → RUN/analysis.json and a short table.

Per dataset and the datasets mixed, per policy × λ (× ablation): accuracy with 95% intervals (over samples
within a seed, and over the seeds), speedup over every single stage and the lossless cascade, paired tests
(exact McNemar, Wilcoxon signed-rank; Holm), stage utilisation, regret against the oracle, the Pareto
frontier, cost-model drift and the Qwen2.5-scale projection (docs/analysis.md). The folder is checked first:
on bad input nothing is written.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="statistics of an evaluation run folder (analysis.json)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p)
    p.add_argument(
        "--record",
        default=None,
        metavar="JSON",
        help="also write the compact record of the mixed group here (per row: accuracy, CI, speedup, CI)",
    )
    p.add_argument("--ablations", action="store_true", help="print the ablation rows too")
    p.set_defaults(func=main)


def add_options(p) -> None:
    p.add_argument("run", help="an evaluation run folder (holds grid.json and cells/)")
    p.add_argument("--resamples", type=int, default=5000, help="bootstrap resamples (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument(
        "--projection-table",
        action="append",
        default=None,
        metavar="JSON",
        help="GPU cost table for the projection (repeatable; default: the committed configs/costs tables)",
    )
    p.add_argument(
        "--drift-table",
        default=None,
        metavar="JSON",
        help="compare the calls with this table where no cell recorded one",
    )


def config_from(args):
    from asd.analysis.analyze import DEFAULT_TABLES, AnalysisConfig

    return AnalysisConfig(
        resamples=args.resamples,
        seed=args.seed,
        projection_tables=list(args.projection_table or DEFAULT_TABLES),
        drift_table=args.drift_table,
    )


def main(args) -> int:
    from pathlib import Path

    from asd.analysis.analyze import ALL, format_table, headline
    from asd.analysis.report import run_analysis, write_json
    from asd.provenance import provenance
    from asd.tracking import log_artifact, log_section

    cfg = config_from(args)
    if args.record and not Path(args.record).parent.is_dir():
        raise FileNotFoundError(f"--record {args.record}: folder {Path(args.record).parent} does not exist")
    run, rec = run_analysis(args.run, cfg, progress=True)
    out = run.root / "analysis.json"
    write_json(out, rec)
    log_artifact(str(out), "analysis")
    print(format_table(rec, ALL, ablations=args.ablations))
    print(f"\nanalysis: {out}")
    if args.record:
        write_json(
            Path(args.record),
            {
                "schema": "asd-experiments-record",
                **provenance(schema_version=1),
                "run": str(run.root),
                "mode": rec["mode"],
                "run_git_revision": rec.get("run_git_revision"),
                "seeds": rec["seeds"],
                "datasets": rec["datasets"],
                "group": ALL if ALL in rec["groups"] else rec["datasets"][0],
                "rows": headline(rec),
            },
        )
        print(f"record: {args.record}")
        log_artifact(args.record, "record")
    log_section("Analysis", f"{run.root}: {rec['cells']} cells, seeds {rec['seeds']}", data=headline(rec))
    return 0
