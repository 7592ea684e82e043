"""``asd inspect FILE``: schema, counts and provenance of a trace file (docs/traces.md)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="print a trace file's schema, counts and provenance")
    p.add_argument("file", help="HDF5 trace file (a shard or a run's traces.h5)")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    p.set_defaults(func=_inspect)


def _inspect(args) -> int:
    from pathlib import Path

    from asd.traces import SCHEMA_VERSION, describe

    if not Path(args.file).is_file():
        raise FileNotFoundError(f"{args.file}: no such file")
    try:
        d = describe(args.file)
    except OSError as e:
        raise ValueError(f"{args.file}: not a readable HDF5 file ({e})") from e
    if args.json:
        print(json.dumps(d, indent=1, sort_keys=True, default=str))
        return 0
    attrs = d["attrs"]
    v = attrs.get("schema_version")
    print(f"{d['path']}  schema version {v}" + ("" if v == SCHEMA_VERSION else f"  (this asd reads {SCHEMA_VERSION})"))
    print("schema:")
    for name, s in d["schema"].items():
        print(f"  {name:<14} {s['dtype']:<28} shape {tuple(s['shape'])}  chunks {tuple(s['chunks'])}")
    print(f"features: {', '.join(d['feature_names'])}")
    print("counts:")
    for k, val in d["counts"].items():
        print(f"  {k}: {val}")
    print("provenance:")
    for k in sorted(attrs):
        if k in ("config", "environment") or k.startswith("checksum"):
            continue
        print(f"  {k}: {attrs[k]}")
    print(f"  environment: {json.dumps(attrs.get('environment'), sort_keys=True)}")
    print(f"  config: {json.dumps(attrs.get('config'), sort_keys=True)}")
    return 0
