"""``asd testbed train|evaluate|verify``: the embedded testbed hierarchy (docs/testbed.md).

- ``train --config configs/testbed.yaml [--out DIR] [--stage s0 ...]``: fixed-step training of every
  stage (concurrently on a GPU, sequentially on a CPU); weights + loss curves under DIR.
- ``evaluate --config configs/testbed.yaml [--out FILE]``: greedy quality of the committed weights on
  the held-out prompts (section ``testbed``): accuracy per stage × level × task and agreement with the
  final stage; prints the tables and writes the JSON record.
- ``costs [--out FILE]``: CPU seconds of a batch-16 decode step and a 256-token prefill per stage.
- ``verify``: check every committed weight file against SHA256SUMS.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "testbed",
        help="train / evaluate / verify the embedded testbed hierarchy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train the testbed stages for their fixed step budget")
    t.add_argument("--config", default="configs/testbed.yaml")
    t.add_argument("--out", default=None, help="output folder (default: training.out_dir)")
    t.add_argument("--stage", action="append", help="train only this stage (repeatable)")
    t.add_argument("--sequential", action="store_true", help="one stage after the other, in this process")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="quality tables of the committed weights on held-out prompts")
    e.add_argument("--config", default="configs/testbed.yaml")
    e.add_argument("--device", default=None, help="override testbed.device")
    e.add_argument("--out", default=None, help="JSON record (default: testbed.results)")
    e.set_defaults(func=_evaluate)
    c = sub.add_parser("costs", help="CPU cost per stage: batch-16 decode step and 256-token prefill")
    c.add_argument("--config", default="configs/testbed.yaml")
    c.add_argument("--out", default="results/benchmarks/testbed_cpu_costs.json")
    c.set_defaults(func=_costs)
    v = sub.add_parser("verify", help="check the committed weights against SHA256SUMS")
    v.set_defaults(func=_verify)


def _train(args) -> int:
    from pathlib import Path

    from asd.run_config import load_section
    from asd.testbed.train import train_all

    out = Path(args.out or load_section(args.config, "training").out_dir)
    return train_all(args.config, out, args.stage, concurrent=False if args.sequential else None)


def format_tables(rec: dict) -> str:
    """Plain-text tables of a quality record (``rec["full"]``)."""
    full = rec["full"]
    stages = full["stages"]
    head = "| | " + " | ".join(stages) + " |\n|---|" + "---:|" * len(stages)
    rows = [
        f"accuracy (%), {full['n']} held-out prompts, greedy",
        head,
        "| overall | " + " | ".join(f"{full['overall'][s]:.1f}" for s in stages) + " |",
    ]
    rows += [
        f"| level {lv} | " + " | ".join(f"{r[s]:.1f}" for s in stages) + " |" for lv, r in full["per_level"].items()
    ]
    rows += [f"| {t} | " + " | ".join(f"{r[s]:.1f}" for s in stages) + " |" for t, r in full["per_task"].items()]
    rows += ["", "P(stage output == final stage output) (%)", head]
    rows += [
        f"| level {lv} | " + " | ".join(f"{r[s]:.1f}" for s in stages) + " |"
        for lv, r in full["agreement_with_final"].items()
    ]
    rows += ["| all | " + " | ".join(f"{full['agreement_overall'][s]:.1f}" for s in stages) + " |"]
    return "\n".join(rows)


def _evaluate(args) -> int:
    from asd.run_config import load_section
    from asd.testbed.quality import evaluate

    out = args.out or load_section(args.config, "testbed").results
    rec = evaluate(args.config, device=args.device, out=out)
    print(format_tables(rec))
    print(f"wrote {out}")
    return 0


def _verify(args) -> int:
    from asd.testbed.weights import stages, verify

    for s in stages():
        print(f"{s}: ok ({verify(s)})")
    return 0


def _costs(args) -> int:
    import json
    from pathlib import Path

    from asd.config_loader import to_dict
    from asd.provenance import provenance
    from asd.run_config import load_section
    from asd.testbed import speed
    from asd.testbed.weights import resolve_model

    hier = load_section(args.config, "hierarchy")
    res = speed.measure({s.name: resolve_model(s.model) for s in hier.stages})
    rec = provenance(config={"hierarchy": to_dict(hier)}, schema_version=1, costs=res)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    for name, r in res["stages"].items():
        print(
            f"{name}: {r['params'] / 1e6:.2f}M params  decode step (b16) {r['decode_step_s'] * 1e3:.2f} ms "
            f"({r['decode_ratio']:.1f}x s0)  prefill 256 {r['prefill_s'] * 1e3:.1f} ms ({r['prefill_ratio']:.1f}x)"
        )
    print(f"wrote {args.out}")
    return 0
