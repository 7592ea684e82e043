"""The ``asd`` command line (also ``python -m asd``).

Subcommands are registered lazily: each entry names a module with
``register(subparsers)``; a module imports its heavy dependencies (torch,
transformers, h5py, submitit) only inside the function it runs, so ``asd --help``
works on a login node without a GPU. A subcommand exists only when it does
something.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name → module holding ``register(subparsers)``; order is the order in --help.
SUBCOMMANDS: list[str] = [
    "asd.commands.run",
    "asd.commands.cascade",
    "asd.commands.evaluate",
    "asd.commands.testbed",
    "asd.commands.data",
    "asd.commands.profile",
    "asd.commands.submit",
    "asd.commands.status",
    "asd.commands.inspect",
    "asd.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asd",
        description="Adaptive speculative decoding: a multi-stage LLM cascade with a cost-aware stopping rule.",
    )
    from asd import __version__

    parser.add_argument("--version", action="version", version=f"asd {__version__}")
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
    try:
        rc = args.func(args)
    except ValueError as e:  # user input errors (ConfigError included): one clear line, non-zero exit
        print(f"asd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"asd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
