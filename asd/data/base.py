"""Shared pieces of the dataset loaders: the ``Dataset`` container and strict readers.

Every reader reads and validates the whole file before returning anything: a
corrupt gzip, a truncated or invalid JSON line, a missing column or a wrong type is
a ``DataError`` (a ``ValueError``) naming the file and, where there is one, the line.
A dataset smaller than its published size is refused unless it is labelled a subset.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file is missing, corrupt or not in the expected format; the message names file and line."""


@dataclass(frozen=True)
class Dataset:
    """The items of one benchmark split and where they came from."""

    name: str  # "mmlu", "humaneval", "gsm8k", "truthfulqa"
    items: tuple  # per-dataset records (MMLUItem, HumanEvalProblem, ...)
    source: str  # file or directory read
    sha256: str  # content_sha256(items): independent of file format, compression, escaping
    published_size: int  # rows in the published split
    subset: str | None = None  # None: the complete split; else what this subset is

    def __len__(self) -> int:
        return len(self.items)

    @property
    def complete(self) -> bool:
        return self.subset is None


def sha256_bytes(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    with open(path, "rb") as f:
        return sha256_bytes(iter(lambda: f.read(1 << 20), b""))


def content_sha256(items: Sequence) -> str:
    """Checksum of the parsed records (canonical JSON, one per line): the same questions give the
    same sum whether they came from CSV, parquet, JSON lines, gzip or the hub."""
    import dataclasses

    return sha256_bytes((json.dumps(dataclasses.asdict(it), sort_keys=True) + "\n").encode() for it in items)


def read_bytes(path: str | Path) -> bytes:
    """File content, gunzipped when the name ends in ``.gz``; corrupt gzip → DataError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    raw = p.read_bytes()
    if p.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: corrupt gzip file ({e})") from e


def read_text(path: str | Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from e


def read_jsonl(path: str | Path) -> list[dict]:
    """All objects of a JSON-lines file (``.jsonl`` or ``.jsonl.gz``); blank lines are skipped."""
    text = read_text(path)
    rows = []
    lines = text.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            last = i == len(lines) or all(not x.strip() for x in lines[i:])
            what = "truncated or invalid JSON" if last else "invalid JSON"
            raise DataError(f"{path}:{i}: {what} ({e.msg} at column {e.colno})") from e
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
        obj["__line__"] = i
        rows.append(obj)
    return rows


def require(path: str | Path, row: dict, fields: dict[str, type | tuple]) -> None:
    """Check that ``row`` (from ``read_jsonl``) has every field with the right type."""
    line = row.get("__line__", "?")
    missing = [f for f in fields if f not in row]
    if missing:
        present = sorted(k for k in row if k != "__line__")
        raise DataError(f"{path}:{line}: missing field(s) {missing}; present: {present}")
    for f, tp in fields.items():
        if not isinstance(row[f], tp):
            raise DataError(
                f"{path}:{line}: field {f!r} should be {getattr(tp, '__name__', tp)}, got {type(row[f]).__name__}"
            )


def read_csv(
    path: str | Path, ncols: int | None = None, header: Sequence[str] | None = None, optional: Sequence[str] = ()
) -> list[dict[str, Any]] | list[list[str]]:
    """Rows of a CSV file, strictly.

    ``header`` given: the first row must contain exactly those columns (plus any of
    ``optional``) in any order; returns dicts (with ``__line__``). Else every row must
    have ``ncols`` fields; returns lists with the line number appended last.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list = []
    cols: list[str] | None = None
    try:
        for rec in reader:
            line = reader.line_num
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            if header is not None and cols is None:
                cols = rec
                missing = [c for c in header if c not in cols]
                extra = [c for c in cols if c not in header and c not in optional]
                if missing or extra:
                    raise DataError(
                        f"{path}:{line}: wrong columns: missing {missing}, unexpected {extra}; expected {list(header)}"
                    )
                continue
            want = len(cols) if cols is not None else ncols
            if want is not None and len(rec) != want:
                raise DataError(f"{path}:{line}: expected {want} fields, got {len(rec)}")
            rows.append(dict(zip(cols, rec), __line__=line) if cols is not None else [*rec, line])
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from e
    if header is not None and cols is None:
        raise DataError(f"{path}: empty file, expected a header {list(header)}")
    return rows


def check_size(name: str, source: str | Path, n: int, published: int, subset: str | None) -> None:
    """A complete split must have its published size; a smaller set must say it is a subset."""
    if subset is None and n != published:
        raise DataError(
            f"{source}: {name} has {n:,} rows, the published split has {published:,}; "
            "pass subset='<what it is>' to use it as a labelled subset"
        )
    if subset is not None and n > published:
        raise DataError(f"{source}: {name} subset has {n:,} rows, more than the published {published:,}")
    if n == 0:
        raise DataError(f"{source}: {name} has no rows")
