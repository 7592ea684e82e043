"""``python -m asd.layout``: route files, the co-located layout run, and its report (docs/layout.md).

    python -m asd.layout routes runs/demo-testbed/traces.h5 --out results/routes/testbed_dp_inf.json
    torchrun --nproc_per_node 8 -m asd.layout run --config configs/layout_h200x8.yaml \\
        --routes results/routes/testbed_dp_inf.json results/routes/testbed_random.json --out OUT
    python -m asd.layout run --config configs/layout_h200x1.yaml --routes ... --out OUT      # one device
    python -m asd.layout report OUT/h200x1-qwen2.5.layout.json --routes ... \\
        --costs configs/costs/h200-qwen2.5-tp4.json --plot OUT/layout.png

``routes`` reads a cascade run's HDF5 traces and writes its route file. ``run`` (one process per device under
torchrun; a single process for one device) builds every stage of the config's ``layout`` section, measures
per-stage costs (section ``cost_profiling``) and replays the route files; rank 0 writes ``<name>.json`` (cost
table), ``<name>.measurements.json`` and ``<name>.layout.json`` into ``--out``. ``report`` prints a record's
tables, optionally against a cost table's estimate and another layout's record, and draws its figure.
Errors in the input (config, route files, a layout that does not fit) are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _labels(paths: list[str]) -> list[tuple[str, str]]:
    """(label, path): the label is the file's stem (unique)."""
    out = [(Path(p).stem, p) for p in paths]
    stems = [s for s, _ in out]
    if len(set(stems)) != len(stems):
        raise ValueError(f"route files need distinct names (their stems label the replays): {paths}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m asd.layout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("routes", help="a cascade run's traces → its route file")
    p.add_argument("traces", help="HDF5 traces of a complete run (asd.traces), e.g. runs/demo-testbed/traces.h5")
    p.add_argument("--out", required=True, help="route file (JSON) to write")
    p = sub.add_parser("run", help="build the layout, measure per-stage costs, replay route files")
    p.add_argument("--config", required=True, help="YAML with sections layout and cost_profiling")
    p.add_argument("--routes", nargs="*", default=[], help="route files to replay (asd.layout routes)")
    p.add_argument("--out", required=True, help="folder for the cost table and the layout record")
    p.add_argument("--no-profile", action="store_true", help="skip the per-stage costs (replay only)")
    p.add_argument("--quick", action="store_true", help="fewer repeats everywhere (a smoke run, not a measurement)")
    p.add_argument("--no-compile", action="store_true", help="decode steps without torch.compile'd blocks")
    p = sub.add_parser("report", help="tables and figure of a layout record")
    p.add_argument("record", help="<name>.layout.json")
    p.add_argument("--routes", nargs="*", default=[], help="the route files it replayed (for --costs)")
    p.add_argument("--costs", default=None, help="cost table whose estimate of each replay is shown")
    p.add_argument("--reference", default=None, help="another layout record (e.g. the 8-GPU one) to compare with")
    p.add_argument("--plot", default=None, help="PNG to write")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"asd.layout {args.cmd}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "routes":
        from asd.layout.routes import routes_from_traces, save_routes

        routes = routes_from_traces(args.traces)
        path = save_routes(routes, args.out)
        print(f"wrote {path}: {len(routes['samples']['sample_id'])} samples, routes {routes['decision_mix']}")
        return 0
    if args.cmd == "report":
        from asd.layout.report import estimates_from_costs, format_record, load_record, plot_record

        rec = load_record(args.record)
        est = estimates_from_costs(rec, dict(_labels(args.routes)), args.costs) if args.costs else None
        ref = load_record(args.reference) if args.reference else None
        print(format_record(rec, est, ref))
        if args.plot:
            print(f"wrote {plot_record(rec, args.plot)}")
        return 0
    import dataclasses

    from asd.layout.routes import load_routes
    from asd.layout.runner import run_layout
    from asd.run_config import load_section

    layout = load_section(args.config, "layout")
    prof = load_section(args.config, "cost_profiling")
    if args.no_compile:
        prof = dataclasses.replace(prof, compile_blocks=False)
    if args.quick:
        prof = dataclasses.replace(prof, warmup=1, repeats=2, decode_steps=min(prof.decode_steps, 8))
        layout = dataclasses.replace(layout, replay_repeats=1)
    route_sets = [(label, load_routes(path)) for label, path in _labels(args.routes)]
    run_layout(layout, prof, route_sets, args.out, profile=not args.no_profile, log=lambda m: print(m, flush=True))
    import torch.distributed as dist

    if layout.device == "cuda" and dist.is_initialized():
        # why: on 4 H200s the closing barrier hung for minutes after CUDA graphs with NCCL inside them had run;
        # every rank is done and rank 0 has written the record, so leave without the teardown
        import os

        sys.stdout.flush()
        os._exit(0)
    if dist.is_initialized():
        # gloo: close the group on every rank together; left to the interpreter's exit, its threads were torn
        # down under a busy 2-core machine with "terminate called without an active exception" (rank killed)
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
