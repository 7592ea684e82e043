"""``asd run --config FILE``: run the job the config names (section ``run``, key ``job``).

Jobs:
- ``pipeline``: ``asd`` subcommands one after the other (section ``pipeline``, asd.evaluation.chain), e.g.
  generate-data → train-predictor → evaluate → analyze → report (configs/pipeline_testbed.yaml), or
  ``make demo``'s evaluate → analyze → report (configs/demo_pipeline.yaml); a step whose command this asd
  lacks is skipped with a message.
- ``synthetic`` (``configs/demo.yaml``): a realistic synthetic batch of predictor outputs and costs
  (asd.core.synthetic), solved by the DP at every λ of the config; prints the decision histogram, the
  expected quality and cost per λ, baselines, and the C++ vs numpy timing of the DP.

Later issues add jobs (the cascade on the testbed, evaluation, ...) to ``JOBS``; each is a function
``(sections: dict[str, dataclass], args) -> dict`` that returns its statistics and prints at the edge.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from asd.config_loader import check_fields
from asd.registry import resolve
from asd.tracking import log_artifact

# job name → "module:function"; heavy jobs import their engines inside.
JOBS: dict[str, str] = {
    "synthetic": "asd.commands.run:run_synthetic",
    "pipeline": "asd.evaluation.chain:run_chain",  # asd subcommands one after the other (section pipeline)
}


@dataclass
class RunConfig:
    """YAML section ``run``: which job ``asd run`` executes."""

    job: Literal["synthetic", "pipeline"] = "synthetic"

    def __post_init__(self) -> None:
        check_fields(self)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the job a config names (synthetic: the DP demo; pipeline: asd subcommands in a chain)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML run config, e.g. configs/demo.yaml")
    p.add_argument("--out", default=None, help="also write the job's statistics as JSON (with provenance)")
    p.set_defaults(func=main)


def main(args) -> int:
    from asd.run_config import load_config

    sections = load_config(args.config)
    run_cfg = sections.get("run", RunConfig())
    stats = resolve(JOBS, run_cfg.job, "job")(sections, args)
    _track(run_cfg.job, stats)
    if args.out:
        _write_json(args.out, stats, sections)
        print(f"wrote {args.out}")
        log_artifact(args.out, "statistics")
    return 0


def _track(job: str, stats: dict) -> None:
    """The job's statistics as sections of this run's tracking record (asd.tracking)."""
    from asd.tracking import log_section

    for key, value in stats.items():
        title = {"per_lambda": "Decisions per λ", "baselines": "Baselines", "timing": "DP timing"}.get(key, key)
        kind = "configuration" if key == "cost_model" else "results"
        log_section(title, f"job {job}: {key}", data=value, kind=kind)


def _write_json(path: str, stats: dict, sections: dict) -> None:
    import json
    import os
    from pathlib import Path

    from asd.config_loader import to_dict
    from asd.provenance import provenance

    rec = provenance(config={k: to_dict(v) for k, v in sections.items()}, schema_version=1)
    rec["stats"] = stats
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    os.replace(tmp, p)


# ----------------------------------------------------------------------------- job: synthetic


def _best_of(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run_synthetic(sections: dict, args) -> dict:
    import numpy as np

    from asd._ext import get_ext
    from asd.core import dp, policies, synthetic
    from asd.core.dp import PolicyConfig

    cfg = sections.get("synthetic", synthetic.SyntheticConfig())
    pol = sections.get("policy", PolicyConfig())
    rng = np.random.default_rng(cfg.seed)
    model = synthetic.cost_model(cfg.stages, cfg.batch_size)
    names = [s.name for s in model.stages]
    K = model.num_stages
    t0 = time.perf_counter()
    data = synthetic.generate(cfg, model, rng)
    gen_s = time.perf_counter() - t0
    B, S = cfg.batch, cfg.draws
    r, cost, outcome = data["r"], data["cost"], data["outcome"]
    current = np.zeros(B, dtype=np.int64)
    rows = np.arange(B)

    def summarise(plan: dp.Plan) -> dict:
        final = dp.route(plan, 0)
        spent = data["draft_cost"] + dp.route_cost(plan, cost, 0)
        skipped, at = np.zeros(B, dtype=bool), current.copy()
        for _ in range(K):  # does the route from stage 0 jump over a stage?
            n = plan.next[rows, at]
            skipped |= (n != dp.STOP) & (n > at + 1)
            at = np.where(n != dp.STOP, n, at)
        return {
            "hist": policies.stage_histogram(final, K).tolist(),
            "skip": float(skipped[final > 0].mean()) if (final > 0).any() else 0.0,
            "quality": float(outcome[rows, final].mean()),  # realised P(output == final)
            "expected_quality": float(data["r_true"][rows, final].mean()),
            "cost": float(spent.mean()),
        }

    print(
        f"asd run: job synthetic — B={B:,} inputs, S={S} predictor draws, K={K} stages "
        f"({' → '.join(names)}), κ={pol.kappa}, decode batch {cfg.batch_size}; generated in {gen_s:.2f} s"
    )
    print(
        "cost 1.00 = the final model alone; cost includes stage 0's own draft "
        f"(mean {data['draft_cost'].mean():.3f}); quality = P(output == final model's output)\n"
    )

    header = (
        f"{'λ':>6} | "
        + " ".join(f"{'stop@' + n:>9}" for n in names)
        + f" | {'skips':>6} | {'quality':>7} | {'E[qual]':>7} | {'cost':>6} | {'mean V0':>8}"
    )
    print(header)
    print("-" * len(header))
    per_lam = []
    plan = None
    for lam in cfg.lambdas:  # one set of output arrays for the whole sweep (out=: no fresh pages per λ)
        plan = dp.solve(r, cost, current, lam, pol.kappa, out=plan)
        s = summarise(plan)
        s["lam"] = lam
        s["mean_v0"] = float(plan.value[:, 0].mean())
        per_lam.append(s)
        print(
            f"{lam:>6g} | "
            + " ".join(f"{100 * h:>8.1f}%" for h in s["hist"])
            + f" | {100 * s['skip']:>5.1f}% | {s['quality']:>7.3f} | {s['expected_quality']:>7.3f} | "
            f"{s['cost']:>6.3f} | {s['mean_v0']:>8.3f}"
        )

    # Baselines at one λ (the config's policy.lam), same inputs.
    lam = pol.lam
    dp_plan = dp.solve(r, cost, current, lam, pol.kappa)
    hist = policies.stage_histogram(dp.route(dp_plan, 0), K)
    base = {
        "dp": dp_plan,
        "oracle": policies.oracle(outcome, cost, current, lam),
        f"threshold τ={pol.tau}": policies.threshold(r, current, pol.tau),
        "random (DP hist)": policies.random_stop(current, hist, np.random.default_rng(cfg.seed + 1)),
        f"speculative 0→{K - 1}": policies.speculative(current, K),
        f"fixed depth {K - 1}": policies.fixed_depth(current, K, K - 1),
    }
    print(
        f"\nbaselines at λ={lam:g} (objective = λ·(1 − quality) + cost; final model alone: "
        f"quality 1.000, cost 1.000, objective 1.000)"
    )
    print(f"{'policy':>20} | {'quality':>7} | {'cost':>6} | {'objective':>9}")
    print("-" * 51)
    base_stats = {}
    for name, plan in base.items():
        s = summarise(plan)
        obj = (lam * (1 - s["quality"]) if math.isfinite(lam) else (0 if s["quality"] == 1 else math.inf)) + s["cost"]
        s["objective"] = obj
        base_stats[name] = s
        print(f"{name:>20} | {s['quality']:>7.3f} | {s['cost']:>6.3f} | {obj:>9.3f}")

    # Timing: the C++ kernel against its numpy twin and a copy of the same inputs.
    timing: dict[str, Any] = {"B": B, "S": S, "K": K, "dtype_r": str(r.dtype), "dtype_cost": str(cost.dtype)}
    ext = get_ext()
    reps = cfg.timing_repeats
    timing["numpy_s"] = _best_of(lambda: dp.solve_ref(r, cost, current, lam, pol.kappa), reps)
    r2, c2 = np.empty_like(r), np.empty_like(cost)

    def copy_inputs() -> None:
        np.copyto(r2, r)
        np.copyto(c2, cost)

    timing["memcpy_s"] = _best_of(copy_inputs, reps)
    print(f"\nDP timing, B={B:,} S={S} K={K} (best of {reps}):  numpy twin {1e3 * timing['numpy_s']:.1f} ms", end="")
    if ext is not None and hasattr(ext, "dp_solve"):
        timing["cpp_s"] = _best_of(lambda: dp.solve(r, cost, current, lam, pol.kappa), reps)
        timing["cpp_out_s"] = _best_of(lambda: dp.solve(r, cost, current, lam, pol.kappa, out=plan), reps)
        timing["omp"] = bool(getattr(ext, "WITH_OPENMP", False))
        print(
            f"   C++ {1e3 * timing['cpp_s']:.2f} ms ({timing['numpy_s'] / timing['cpp_s']:.0f}× numpy; "
            f"{1e3 * timing['cpp_out_s']:.2f} ms into reused outputs)"
            f"   memcpy of r+cost {1e3 * timing['memcpy_s']:.2f} ms "
            f"(C++/memcpy {timing['cpp_s'] / timing['memcpy_s']:.2f})"
        )
    else:
        print("   C++ extension not built (numpy twin only)")
    return {"per_lambda": per_lam, "baselines": base_stats, "timing": timing, "cost_model": model.to_dict()}
