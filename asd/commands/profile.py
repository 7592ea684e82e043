"""``asd profile``: measure each stage's latency and write the cost model (docs/algorithm.md#costs, docs/gpu.md).

    asd profile --config configs/cost_profiling.yaml --hierarchy configs/qwen2.5_models.yaml \\
        --random-weights --out configs/costs/h100-qwen2.5.json
    asd profile --from-measurements profile.json --out configs/costs/h100-qwen2.5.json
    asd profile --from-measurements profile.json --tensor-parallel tp72b.json --out costs-tp.json

The first form measures (prefill vs tokens, decode per step at the configured batch sizes; section
``cost_profiling``) with one model in memory at a time; ``--random-weights`` builds each stage's shape
with random weights (Qwen2.5 ids need no download). The second refits measurements taken earlier, e.g.
by ``scripts/gpu_decode.py`` on a GPU machine. Both write the cost model (``asd.costs_io``; the
measurement summary in its provenance) and the raw measurements next to it (``*.measurements.json``),
and print the decode-cost ratios against the bandwidth-floor ratios. ``--tensor-parallel`` replaces a
stage (72B) by a tensor-parallel run of ``python -m asd.models.tensor_parallel`` measured on the same card
(wall clock with its GPUs); the ratios are then printed in wall clock and in GPU-seconds.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "profile",
        help="measure stage latencies and write the cost model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="configs/cost_profiling.yaml", help="YAML with a cost_profiling section")
    p.add_argument("--hierarchy", default=None, help="YAML with a hierarchy section (default: --config)")
    p.add_argument("--random-weights", action="store_true", help="random weights of each stage's shape")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--eager-batch", default="", help="also time transformers' eager decode at these batch sizes")
    p.add_argument("--from-measurements", default=None, help="refit a measurements JSON instead of measuring")
    p.add_argument(
        "--tensor-parallel",
        default=None,
        metavar="FILE",
        help="a python -m asd.models.tensor_parallel result that replaces its stage (same card only)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="decode batch size the cost model is evaluated at")
    p.add_argument("--out", required=True, help="cost model JSON to write")
    p.set_defaults(func=_profile)


def _profile(args) -> int:
    import json
    from pathlib import Path

    from asd.costs_io import save_cost_model
    from asd.profiler import add_tensor_parallel, fit_cost_model, floor_ratios, load_profile, save_profile

    out = Path(args.out)
    if args.from_measurements:
        prof = load_profile(args.from_measurements)
    else:
        import torch

        from asd.profiler import profile_hierarchy
        from asd.run_config import load_section

        cfg = load_section(args.config, "cost_profiling")
        hier = load_section(args.hierarchy or args.config, "hierarchy")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        eager = [int(b) for b in args.eager_batch.split(",") if b.strip()]
        prof = profile_hierarchy(hier, cfg, args.random_weights, device, eager)
    if args.tensor_parallel:
        prof = add_tensor_parallel(prof, json.loads(Path(args.tensor_parallel).read_text()), args.tensor_parallel)
    model = fit_cost_model(prof, batch_size=args.batch_size)  # before any file is written: a bad profile raises
    raw = out.with_name(out.stem + ".measurements.json")
    if args.tensor_parallel or not args.from_measurements or Path(args.from_measurements).resolve() != raw.resolve():
        save_profile(prof, raw)
    save_cost_model(model, out, measurements_file=raw.name)
    print(f"wrote {out} and {raw}")
    from asd.tracking import log_artifact, log_section

    log_artifact(out, "cost model")
    log_artifact(raw, "measurements")
    log_section("Decode cost ratios", f"batch {args.batch_size}", data=floor_ratios(model, prof, args.batch_size))
    print(f"decode step cost / final stage's (batch {args.batch_size}) vs weight bytes / final stage's:")
    for r in floor_ratios(model, prof, args.batch_size):
        tp = f"  GPU-seconds {r['measured_device_seconds']:.3f} ({r['devices']} GPUs)" if args.tensor_parallel else ""
        print(f"  {r['name']:>6}: measured {r['measured']:.3f}  floor {r['floor']:.3f}  ({r['rel_diff']:+.1%}){tp}")
    return 0
