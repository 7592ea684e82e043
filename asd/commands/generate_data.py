"""``asd generate-data --config FILE``: the quality predictor's training set, sharded through the jobs layer.

    asd generate-data --config configs/predictor_data_small.yaml                      # jobs.executor (local)
    asd generate-data --config configs/predictor_data.yaml --executor slurm           # array + merge on SLURM
    asd generate-data --config configs/predictor_data_gpu.yaml --executor in-process  # one process, no submitit
    asd generate-data --config configs/predictor_data_qwen2.5.yaml --hierarchy configs/testbed.yaml

Every prompt is traced through every stage (docs/predictor_data.md); the shards land in
``<jobs.output_dir>/shards/``, the merged file in ``<jobs.output_dir>/traces.h5`` (also linked as ``data.h5``).
A rerun resumes (finished shards are skipped, partial ones continue). Overrides (``--hierarchy``,
``--num-samples``, ``--output-dir``, ``--set``) write the resolved config to ``<output_dir>/logs/`` and run from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

STEPS = ("asd.predictor_data.steps:testbed", "asd.predictor_data.steps:benchmarks")
EXECUTORS = ("local", "slurm", "in-process")
DATA_LINK = "data.h5"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate-data",
        help="trace every prompt through every stage: the quality predictor's training set (HDF5)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML with hierarchy, predictor_data and jobs sections")
    p.add_argument("--executor", default=None, choices=EXECUTORS, help="override jobs.executor")
    p.add_argument("--hierarchy", default=None, metavar="FILE", help="take the hierarchy section from FILE")
    p.add_argument("--num-samples", type=int, default=None, help="override jobs.num_samples")
    p.add_argument("--output-dir", default=None, help="override jobs.output_dir")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one value (YAML), repeatable"
    )
    p.add_argument("--no-wait", action="store_true", help="slurm: return after submitting")
    p.set_defaults(func=main)


def resolve_config(args) -> str:
    """The config path the shards run from: ``--config``, or the resolved copy when something is overridden.

    Checks everything that can be checked before a model loads or a file is written (ValueError)."""
    import yaml

    from asd.config_loader import read_yaml, to_dict
    from asd.run_config import load_config

    raw = read_yaml(args.config)
    for name in ("hierarchy", "predictor_data", "jobs"):
        if name not in raw and not (name == "hierarchy" and args.hierarchy):
            raise ValueError(f"{args.config}: missing section {name!r}; see configs/predictor_data.yaml")
    over = args.hierarchy or args.num_samples is not None or args.output_dir or args.set
    if over:
        for item in args.set:
            key, eq, value = item.partition("=")
            section, dot, field = key.partition(".")
            if not eq or not dot or not field:
                raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. predictor_data.fast=false")
            if section not in raw:
                raise ValueError(f"--set {item!r}: {args.config} has no section {section!r}")
            raw[section][field] = yaml.safe_load(value)
        if args.hierarchy:
            h = read_yaml(args.hierarchy)
            if "hierarchy" not in h:
                raise ValueError(f"{args.hierarchy}: no 'hierarchy' section to take")
            raw["hierarchy"] = h["hierarchy"]
        if args.num_samples is not None:
            raw["jobs"]["num_samples"] = args.num_samples
        if args.output_dir:
            raw["jobs"]["output_dir"] = args.output_dir
    cfg = load_config(args.config) if not over else None
    if over:  # validate the resolved mapping strictly before writing it anywhere
        from asd.config_loader import from_dict
        from asd.run_config import section_class

        cfg = {k: from_dict(section_class(k), v, source=f"{args.config} (+ overrides)", path=k) for k, v in raw.items()}
    assert cfg is not None
    job, gen = cfg["jobs"], cfg["predictor_data"]
    if job.step not in STEPS:
        raise ValueError(
            f"{args.config}: jobs.step {job.step!r} is not a predictor-data step; valid: {', '.join(STEPS)}"
        )
    want = f"asd.predictor_data.steps:{gen.source}"
    if job.step != want:
        raise ValueError(f"{args.config}: predictor_data.source {gen.source!r} needs jobs.step {want!r}")
    if gen.source == "testbed" and not gen.repeats:
        from asd.testbed.predictor_split import capacity, cells

        capacity(cells(tuple(gen.tasks), tuple(gen.levels)), job.num_samples)
    if gen.source == "benchmarks":
        from asd.predictor_data.sources import check_available

        check_available(gen, job.num_samples)
    from asd.models.loading import check_hierarchy

    check_hierarchy(cfg["hierarchy"])
    if not over:
        return args.config
    from asd.jobs.plan import fingerprint

    out = Path(job.output_dir) / "logs" / f"generate-data-{fingerprint(cfg)}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        tmp.write_text(
            f"# resolved by asd generate-data from {args.config} (+ overrides)\n"
            + yaml.safe_dump({k: to_dict(v) for k, v in cfg.items()}, sort_keys=False)
        )
        tmp.replace(out)
    return str(out)


def run_in_process(config_path: str) -> dict:
    """Every pending shard in this process, one after the other, then the merge (no submitit, no scheduler)."""
    from asd.jobs.merge import merge_run
    from asd.jobs.plan import prepare_output_dir
    from asd.jobs.shard import run_shard
    from asd.run_config import load_config

    config = load_config(config_path)
    prepare_output_dir(config, config_path)
    runs = [run_shard(config_path, i) for i in range(config["jobs"].shards)]
    stats = merge_run(config_path)
    stats["shards_run"] = runs
    return stats


def link_data(merged: Path) -> Path:
    """``data.h5`` beside the merged file (a hard link: the same bytes under the contract's name)."""
    link = merged.with_name(DATA_LINK)
    tmp = merged.with_name(DATA_LINK + f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.link(merged, tmp)
    tmp.replace(link)
    return link


def summary(path: Path) -> dict:
    """Counts and label rates of a finished file (read through the schema's checks)."""
    import numpy as np

    from asd.predictor_data.schema import read_predictor_data

    d = read_predictor_data(path, ["sample_id", "task", "level", "agree_final", "score", "repeat", "prompt_key"])
    return {
        "path": str(path),
        "samples": len(d),
        "stages": d.stage_names,
        "distinct_prompts": len(np.unique(d.data["prompt_key"])),
        "repeats": int((d.data["repeat"] > 0).sum()),
        "agree_final_rate": np.round(d.data["agree_final"].mean(0), 4).tolist(),
        "score_mean": np.round(d.data["score"].mean(0), 4).tolist(),
        "per_task": {str(t): int((d.data["task"] == t).sum()) for t in sorted(set(d.data["task"]))},
    }


def main(args) -> int:
    if args.num_samples is not None and args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    config_path = resolve_config(args)
    from asd.run_config import load_section

    job = load_section(config_path, "jobs")
    executor = args.executor or job.executor
    t0 = time.perf_counter()
    if executor == "in-process":
        if args.no_wait:
            raise ValueError("--no-wait needs executor slurm")
        stats = run_in_process(config_path)
    else:
        from asd.jobs.executor import submit_run

        if args.no_wait and executor != "slurm":
            raise ValueError("--no-wait needs executor slurm: local tasks are children of this process")
        sub = submit_run(config_path, executor=executor)
        print(f"submitted {len(sub.shard_jobs)} shard(s), skipped {len(sub.skipped)} done; logs in {sub.folder}")
        if args.no_wait:
            return 0
        stats = sub.wait()
    secs = time.perf_counter() - t0
    link = link_data(Path(stats["path"]))
    rec = summary(link)
    ran = sum(s["written"] for s in stats.get("shards_run", []) if isinstance(s, dict))
    rec.update(seconds=round(secs, 1), samples_written=ran, samples_per_s=round(ran / secs, 2) if secs > 0 else None)
    print(json.dumps(rec, indent=1))
    return 0
