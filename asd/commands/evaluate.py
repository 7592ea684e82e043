"""``asd evaluate --config FILE``: the evaluation grid (policies, λ, seeds, datasets, ablations; docs/evaluation.md).

    asd evaluate --config configs/evaluation.yaml                    # online: the cascade, for real, per cell
    asd evaluate --config configs/evaluation.yaml --mode replay --replay-data runs/predictor-data/data.h5
    asd evaluate --config configs/evaluation_qwen2.5.yaml --stand-in --executor local   # the plumbing run
    asd evaluate --config configs/evaluation.yaml --dry-run          # check and list the cells; run nothing

Everything the cells read is checked before any model runs (a bad λ, dataset, policy, predictor, cost
table, replay file or a run folder of another config: one line on stderr, exit status 2). Cells run as
submitit arrays through the jobs layer (``jobs.executor``: slurm | local); a rerun resumes. The run folder
(``jobs.output_dir``) gets ``grid.json`` (cells, wall time, CPU/GPU-hours) and ``cells/<id>/traces.h5``.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="run the evaluation grid (policies × λ × seeds × datasets × ablations), online or replayed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML with evaluation, hierarchy (and jobs, cascade) sections")
    p.add_argument("--mode", default="online", choices=["online", "replay"])
    p.add_argument("--replay-data", default=None, help="full per-stage traces for --mode replay")
    p.add_argument("--stand-in", action="store_true", help="the plumbing run: evaluation.stand_in's hierarchy")
    p.add_argument("--executor", default=None, choices=["slurm", "local"], help="override jobs.executor")
    p.add_argument("--output-dir", default=None, help="override jobs.output_dir (the run folder)")
    p.add_argument("--data-dir", default=None, help="override data.data_dir (prepared benchmarks)")
    p.add_argument("--dry-run", action="store_true", help="check everything and list the cells; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args) -> int:
    from collections import Counter

    from asd.evaluation.run import format_summary, load_plan, run_grid, summarize, validate

    plan = load_plan(
        args.config,
        mode=args.mode,
        stand_in=args.stand_in,
        output_dir=args.output_dir,
        executor=args.executor,
        data_dir=args.data_dir,
        replay_data=args.replay_data,
    )
    waves = Counter(c.wave for c in plan.cells)
    label = f", labelled {plan.label}" if plan.label else ""
    print(
        f"asd evaluate: {len(plan.cells)} cells ({waves[1]} in wave 1, {waves[2]} in wave 2), mode {plan.mode}"
        f"{label}, {plan.ev.samples} samples per cell, run folder {plan.root}"
    )
    for n in plan.notes:
        print(f"  note: {n}")
    if args.dry_run:
        validate(plan)
        for c in plan.cells:
            print(f"  {c.id}")
        print("checked: predictors, cost table, data, prompts, backend; nothing was run")
        return 0
    grid = run_grid(plan, progress=not args.no_progress)
    s = summarize(plan)
    print(format_summary(s))
    gpu = "-" if grid["gpu_hours"] is None else f"{grid['gpu_hours']:.3f}"
    print(
        f"wall time {grid['wall_time_s']:.1f} s{_over(grid)}, CPU-hours {grid['cpu_hours']:.3f}, GPU-hours {gpu}; "
        f"grid: {plan.root / 'grid.json'}"
    )
    if not grid["complete"]:
        for f in grid["failures"][:10]:
            print(f"  failed: {f}")
        print(f"asd evaluate: {len(grid['missing_cells'])} cell(s) not finished; rerun the same command to resume")
        return 1
    return 0


def _over(grid: dict) -> str:
    """`` over 2 invocations (this one 27.7 s)`` when earlier runs of ``asd evaluate`` worked on the folder."""
    inv = grid.get("invocations") or []
    if len(inv) < 2:
        return ""
    return f" over {len(inv)} invocations (this one {inv[-1]['wall_time_s']:.1f} s)"
