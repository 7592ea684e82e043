"""``asd status RUN``: progress of a run per shard (done / partial rows / missing / corrupt), read from its folder."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("status", help="progress of a run, per shard")
    p.add_argument("run", help="the run folder (jobs.output_dir)")
    p.add_argument("--phase", default="generate", choices=["generate", "evaluate"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)


def _status(args) -> int:
    from asd.jobs.status import format_status, run_status

    st = run_status(args.run, args.phase)
    print(json.dumps(st, indent=1) if args.json else format_status(st))
    return 0
