"""``asd submit --config RUN.yaml``: run the config's ``jobs`` section as a sharded submitit array.

    asd submit --config configs/run.yaml                  # submit (slurm or local, per jobs.executor), wait, merge
    asd submit --config configs/run.yaml --no-wait        # print the job ids and return (slurm)
    asd submit --config configs/run.yaml --sbatch slurm/out   # render sbatch scripts for hand submission instead

A rerun skips finished shards and resumes partial ones (docs/jobs.md).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit",
        help="run a config's jobs as a sharded array (slurm | local)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML with a jobs: section")
    p.add_argument("--phase", default="generate", choices=["generate", "evaluate"])
    p.add_argument("--executor", default=None, choices=["slurm", "local"], help="override jobs.executor")
    p.add_argument("--no-wait", action="store_true", help="return after submitting")
    p.add_argument("--sbatch", default=None, metavar="DIR", help="only render sbatch templates into DIR")
    p.set_defaults(func=_submit)


def _submit(args) -> int:
    if args.sbatch:
        from asd.jobs.sbatch import render_all

        for path in render_all(args.config, args.sbatch):
            print(path)
        return 0
    from asd.jobs.executor import submit_run
    from asd.predictor.checkpoint import predictor_for
    from asd.run_config import load_config

    predictor_for(load_config(args.config))  # a predictor checkpoint that does not fit: error before submitting

    if args.no_wait:
        from asd.run_config import load_section

        if (args.executor or load_section(args.config, "jobs").executor) != "slurm":
            raise ValueError("--no-wait needs executor slurm: local tasks are children of this process")
    sub = submit_run(args.config, args.phase, executor=args.executor)
    print(
        f"submitted {len(sub.shard_jobs)} shard(s) {[j.job_id for j in sub.shard_jobs]}, "
        f"skipped {len(sub.skipped)} done; logs in {sub.folder}"
    )
    if args.no_wait:
        return 0
    stats = sub.wait()
    print(json.dumps({k: v for k, v in stats.items() if k != "shards_run"}, indent=1))
    return 0
