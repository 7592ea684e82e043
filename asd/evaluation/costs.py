"""The testbed's measured cost table: ``asd testbed costs`` output → ``asd.core.costs.CostModel``.

``asd testbed costs`` measures, per stage on the CPU, one batched decode step (batch b, KV cache of c tokens)
and one forward over a p-token prompt (batch 1). The table keeps exactly that: prefill ``slope = prefill_s /
p`` s/token with intercept 0, decode ``intercept = decode_step_s`` s/step with slope 0 in the batch size (one
batch size measured), ``batch_size = b``. Committed as ``configs/costs/testbed-cpu.json`` (``python -m
asd.evaluation.costs``), the table that prices the testbed grid's decisions ("measured costs"; the ablation
``uniform_costs`` prices every stage as the final one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asd.core.costs import CostModel, LinearFit, StageCost


def from_testbed_costs(rec: dict) -> CostModel:
    """The cost table of a ``asd testbed costs`` record (its ``costs`` block: batch, prompt_tokens, stages)."""
    c = rec["costs"]
    stages = []
    for name, s in c["stages"].items():
        stages.append(
            StageCost(
                name=name,
                prefill=LinearFit(slope=s["prefill_s"] / c["prompt_tokens"], intercept=0.0, n=1),
                decode=LinearFit(slope=0.0, intercept=s["decode_step_s"], n=1),
            )
        )
    prov = {
        "source": "asd testbed costs",
        "measured_git_revision": rec.get("git_revision"),
        "measured_utc": rec.get("created_utc"),
        "environment": rec.get("environment"),
        "decode_context": c.get("context"),
        "threads": c.get("threads"),
    }
    return CostModel(stages=tuple(stages), batch_size=int(c["batch"]), provenance=prov)


def main(argv: list[str] | None = None) -> int:
    from asd.costs_io import save_cost_model

    p = argparse.ArgumentParser(prog="python -m asd.evaluation.costs", description=__doc__)
    p.add_argument("--from", dest="src", default="results/benchmarks/testbed_cpu_costs.json")
    p.add_argument("--out", default="configs/costs/testbed-cpu.json")
    args = p.parse_args(argv)
    model = from_testbed_costs(json.loads(Path(args.src).read_text()))
    save_cost_model(model, args.out, built_from=args.src)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
