"""Shared helpers of the evaluation tests: small grid configs on the embedded testbed."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def testbed_hierarchy() -> dict:
    return yaml.safe_load((ROOT / "configs/testbed.yaml").read_text())["hierarchy"]


def write_config(path: Path, output_dir: Path, cascade: dict | None = None, jobs: dict | None = None,
                 predictor: dict | None = None, **evaluation) -> Path:
    """A grid config on the testbed: one dataset, one seed, a few samples unless overridden; the prior unless
    ``predictor`` (the section, e.g. ``{"kind": "mlp", "checkpoint": "testbed:predictor"}``) is given."""
    ev = {
        "datasets": ["gsm8k"],
        "samples": 6,
        "seeds": [0],
        "lambdas": [1.0, float("inf")],
        "taus": [0.7],
        "confidence_taus": [0.8],
        "fixed_depths": [3],
        "ablations": [],
        "cost_model": str(ROOT / "configs/costs/testbed-cpu.json"),
    }
    ev.update(evaluation)
    cfg = {
        "hierarchy": testbed_hierarchy(),
        "cascade": {"max_new_tokens": 24, "batch_size": 3, **(cascade or {})},
        "evaluation": ev,
        "jobs": {"output_dir": str(output_dir), "executor": "local", "array_parallelism": 1, "shards": 1,
                 "timeout_min": 20, **(jobs or {})},
    }
    if predictor is not None:
        cfg["predictor"] = predictor
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
