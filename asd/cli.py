"""The ``asd`` command line (also ``python -m asd``).

Subcommands are registered lazily: each entry names a module with
``register(subparsers)``; a module imports its heavy dependencies (torch,
transformers, h5py, submitit) only inside the function it runs, so ``asd --help``
works on a login node without a GPU. A subcommand exists only when it does
something. Every command runs under an experiment tracker (``asd.tracking``): it writes
``<log dir>/<command>[-<action>][-<config>]_comprehensive.md`` and ``..._data.json``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name → module holding ``register(subparsers)``; order is the order in --help.
SUBCOMMANDS: list[str] = [
    "asd.commands.run",
    "asd.commands.cascade",
    "asd.commands.testbed",
    "asd.commands.data",
    "asd.commands.profile",
    "asd.commands.submit",
    "asd.commands.status",
    "asd.commands.inspect",
    "asd.commands.analyze",
    "asd.commands.report",
    "asd.commands.models",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asd",
        description="Adaptive speculative decoding: a multi-stage LLM cascade with a cost-aware stopping rule.",
    )
    from asd import __version__

    parser.add_argument("--version", action="version", version=f"asd {__version__}")
    parser.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="where every command writes its tracking record (<name>_comprehensive.md, <name>_data.json); "
        "default $ASD_LOG_DIR, else logs/ (docs/tracking.md)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in SUBCOMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from asd.tracking import for_command

    with for_command(args, sys.argv[1:] if argv is None else argv) as tracker:  # every command is tracked
        try:
            rc = int(args.func(args) or 0)
        except ValueError as e:  # user input errors (ConfigError included): one clear line, non-zero exit
            print(f"asd {args.command}: error: {e}", file=sys.stderr)
            tracker.set_status("error", f"{type(e).__name__}: {e}")
            return 2
        except FileNotFoundError as e:
            print(f"asd {args.command}: error: {e}", file=sys.stderr)
            tracker.set_status("error", f"{type(e).__name__}: {e}")
            return 2
        if rc:
            tracker.set_status("error", f"exit status {rc}")
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
