"""The ``asd`` command line (also ``python -m asd``).

Subcommands are registered lazily: each entry names a module with
``register(subparsers)``; a module imports its heavy dependencies (torch,
transformers, h5py, submitit) only inside the function it runs, so ``asd --help``
works on a login node without a GPU. A subcommand exists only when it does
something. Every command runs under an experiment tracker (``asd.tracking``): it writes
``<log dir>/<command>[-<action>][-<config>]_comprehensive.md`` and ``..._data.json``.

Errors: a bad config, bad arguments or a missing file print one line per problem
(``asd CMD: error: FILE:LINE: KEY: what``) and exit with status 2, never a traceback;
an unexpected exception (a bug) prints one line and exits with 1. ``--debug`` anywhere
on the command line, or ``ASD_DEBUG=1``, shows the traceback instead (docs/config.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name → module holding ``register(subparsers)``; order is the order in --help.
SUBCOMMANDS: list[str] = [
    "asd.commands.run",
    "asd.commands.cascade",
    "asd.commands.evaluate",
    "asd.commands.testbed",
    "asd.commands.data",
    "asd.commands.predictor",
    "asd.commands.profile",
    "asd.commands.submit",
    "asd.commands.generate_data",
    "asd.commands.status",
    "asd.commands.inspect",
    "asd.commands.analyze",
    "asd.commands.report",
    "asd.commands.models",
]


MAX_ERROR_LINES = 20  # lines printed for one failure (a ConfigError holds one per problem)
MAX_LINE_CHARS = 400
# Errors of the user's input or environment: one line each, exit status 2. Anything else is a bug of asd:
# one line saying so, exit status 1, and the traceback with --debug (or ASD_DEBUG=1).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)


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
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks (also ASD_DEBUG=1; accepted anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in SUBCOMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def error_lines(e: BaseException) -> tuple[list[str], int]:
    """The lines printed for ``e`` and the exit status (module constants; docs/config.md)."""
    status = getattr(e, "exit_status", None)
    if isinstance(e, ModuleNotFoundError) and e.name:
        lines = [f"this needs the Python package {e.name!r}, which is not installed (pip install it)"]
    elif status is not None or isinstance(e, USER_ERRORS):
        lines = getattr(e, "errors", None) or str(e).splitlines() or [type(e).__name__]
        if isinstance(e, OSError) and e.strerror:  # "[Errno 28] No space left on device: 'x'" → "x: No space ..."
            lines = [f"{e.filename}: {e.strerror}" if e.filename else e.strerror]
    else:
        text = str(e).splitlines()
        lines = [
            f"internal error (a bug in asd): {type(e).__name__}{': ' + text[0] if text else ''} "
            "-- rerun with --debug (or ASD_DEBUG=1) for the traceback, and please report it"
        ]
        status = 1
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[:MAX_ERROR_LINES], f"... and {len(lines) - MAX_ERROR_LINES:,} more"]
    lines = [ln if len(ln) <= MAX_LINE_CHARS else ln[: MAX_LINE_CHARS - 3] + "..." for ln in lines]
    return lines, int(status if status is not None else 2)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ASD_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from asd.tracking import for_command

    with for_command(args, argv) as tracker:  # every command is tracked (asd.tracking)
        try:
            rc = args.func(args)
        except KeyboardInterrupt:
            tracker.set_status("error", "interrupted")
            if debug:
                raise
            print(f"asd {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as e:
            tracker.set_status("error", f"{type(e).__name__}: {e}")
            if debug:
                raise
            lines, status = error_lines(e)
            for line in lines:
                print(f"asd {args.command}: error: {line}", file=sys.stderr)
            return status
        rc = int(rc or 0)
        if rc:
            tracker.set_status("error", f"exit status {rc}")
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
