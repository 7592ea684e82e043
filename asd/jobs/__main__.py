"""Entry points the sbatch templates call (slurm/*.sbatch):

python -m asd.jobs shard --config RUN.yaml --index "$SLURM_ARRAY_TASK_ID" [--phase generate|evaluate]
python -m asd.jobs merge --config RUN.yaml [--phase generate|evaluate]
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m asd.jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shard", help="compute (or resume) one shard")
    s.add_argument("--config", required=True)
    s.add_argument("--index", required=True, type=int)
    s.add_argument("--phase", default="generate", choices=["generate", "evaluate"])
    m = sub.add_parser("merge", help="merge a run's finished shards into one file")
    m.add_argument("--config", required=True)
    m.add_argument("--phase", default="generate", choices=["generate", "evaluate"])
    args = p.parse_args(argv)
    try:
        if args.cmd == "shard":
            from asd.jobs.plan import prepare_output_dir
            from asd.jobs.shard import run_shard
            from asd.run_config import load_config
            from asd.tracking import track_shard

            prepare_output_dir(load_config(args.config), args.config)
            with track_shard(args.config, args.index, args.phase):
                stats = run_shard(args.config, args.index, args.phase)
        else:
            from asd.jobs.merge import merge_run
            from asd.tracking import track_array

            with track_array(args.config, args.phase):
                stats = merge_run(args.config, args.phase)
    except ValueError as e:
        print(f"asd.jobs {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
