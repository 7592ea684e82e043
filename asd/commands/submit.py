"""``asd submit --config RUN.yaml``: run the config's ``jobs`` section as a sharded submitit array.

    asd submit --config configs/run.yaml                  # submit (slurm or local, per jobs.executor), wait, merge
    asd submit --config configs/run.yaml --no-wait        # print the job ids and return (slurm)
    asd submit --config configs/run.yaml --sbatch slurm/out   # render sbatch scripts for hand submission instead

A rerun skips finished shards, redoes damaged ones and resumes partial ones; a run whose jobs are still queued
or running is not submitted twice; a failed task is reported in one line (docs/jobs.md).
"""

from __future__ import annotations

import argparse
import json
import sys


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
    from submitit.core.utils import FailedSubmissionError

    from asd.jobs.executor import submit_run
    from asd.jobs.failures import RunFailed
    from asd.predictor.checkpoint import predictor_for
    from asd.run_config import load_config

    predictor_for(load_config(args.config))  # a predictor checkpoint that does not fit: error before submitting

    if args.no_wait:
        from asd.run_config import load_section

        if (args.executor or load_section(args.config, "jobs").executor) != "slurm":
            raise ValueError("--no-wait needs executor slurm: local tasks are children of this process")
    try:
        sub = submit_run(args.config, args.phase, executor=args.executor)
    except FailedSubmissionError as e:  # sbatch refused the job: its own message, one line
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        print(f"asd submit: error: the scheduler refused the submission: {lines[-1] if lines else e}", file=sys.stderr)
        return 1
    except OSError as e:  # writing the submission's files (a full disk, no permission): nothing was queued
        print(f"asd submit: error: could not write the submission: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        return 1
    for i, c in sub.checks.items():
        if c.state in ("corrupt", "damaged") or c.reason:
            print(f"shard {i}: {c.state}{f' ({c.reason})' if c.reason else ''}: " + _todo(c.state, c.rows))
    print(
        f"submitted {len(sub.shard_jobs)} shard(s) {[j.job_id for j in sub.shard_jobs]}, "
        f"skipped {len(sub.skipped)} done; logs in {sub.folder}"
    )
    if args.no_wait:
        return 0
    try:
        stats = sub.wait()
    except RunFailed as e:
        print(f"asd submit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"asd submit: interrupted; submitted jobs keep running (asd status {sub.job.output_dir}); "
            f"rerun `{sub.rerun}` once they have ended to resume",
            file=sys.stderr,
        )
        return 130
    print(json.dumps({k: v for k, v in stats.items() if k != "shards_run"}, indent=1))
    _track(sub, stats)
    return 0


def _track(sub, stats: dict) -> None:
    """The merged run in this command's record: merge statistics, resources summed over the array's attempts."""
    from asd.resources import sum_resources
    from asd.tracking import log_artifact, log_section, read_shard_records

    recs, _ = read_shard_records(sub.job.output_dir, sub.phase)
    parts = [r["resources"] for r in recs if r.get("resources")]
    log_section(
        "Merged run", f"run folder {sub.job.output_dir}", data={k: v for k, v in stats.items() if k != "shards_run"}
    )
    if parts:
        log_section("Array resources", f"summed over {len(parts)} task attempt(s)", data=sum_resources(parts))
    log_artifact(stats["path"], "traces")


def _todo(state: str, rows: int) -> str:
    if state in ("corrupt", "damaged"):
        return "moved aside and redone"
    return f"resumed after its {rows} verified row(s)" if rows else "started over"
