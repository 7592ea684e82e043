"""Per-sample traces in HDF5 (h5py): schema, a crash-tolerant writer, readers (numpy, pandas).

One file holds N samples of a run over K stages, column by column (docs/traces.md):

==============  =========  ===========  ==================================================================
dataset         dtype      shape        meaning
==============  =========  ===========  ==================================================================
sample_id       int64      [N]          global sample id (ascending in every file)
dataset         str        [N]          source dataset name (vlen utf-8)
prompt_len      int32      [N]          prompt tokens
ran             bool       [N, K]       stage k ran on this sample
draft_len       int32      [N, K]       tokens of y_k
accepted_len    int32      [N, K]       tokens of the incoming draft stage k accepted
latency_s       float64    [N, K]       seconds spent in stage k
decision        int8       [N, K]       at stage k: STOP (-1), m = jumped to stage m, NOT_RUN (-2)
predictions     float32    [N, K, K]    r̂_m predicted at stage k (NaN if none)
features        float32    [N, K, F]    stage-k features; names in the ``feature_names`` attribute
final_stage     int8       [N]          stage whose output was returned
tokens          vlen int32 [N]          returned token ids
text            str        [N]          returned text (vlen utf-8)
score           float32    [N]          task score (NaN = unscored)
batch_id        int64      [N]          the cascade batch the sample ran in (its first sample id; -1: none)
batch_latency_s float64    [N]          wall-clock seconds of that whole batch (NaN: not measured)
==============  =========  ===========  ==================================================================

Every dataset is chunked and resizable along samples. File attributes: ``schema_version``, ``config``
(JSON), ``git_revision``, ``created_utc``, ``environment`` (JSON), ``seed``, ``lam``, ``models`` (JSON),
``cost_model`` (JSON), and the writer's ``num_stages``, ``num_features``, ``n_complete`` (rows flushed and
valid: a crashed writer's file is trusted up to there) and ``complete`` (set when the writer closed cleanly).

:class:`TraceWriter` writes ``<path>.partial``, flushes after every batch and renames to ``<path>`` on
:meth:`TraceWriter.close`. Readers refuse a file of another ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2  # 2: batch_id and batch_latency_s added
STOP = -1  # decision: stop at this stage
NOT_RUN = -2  # decision: the stage did not run
PARTIAL_SUFFIX = ".partial"
CHUNK_ROWS = 1024

# name → (numpy dtype or "str"/"vlen_int32", trailing shape in dims "K"/"F", fill value for absent data)
FIELDS: dict[str, tuple[Any, tuple[str, ...], Any]] = {
    "sample_id": (np.int64, (), None),
    "dataset": ("str", (), ""),
    "prompt_len": (np.int32, (), 0),
    "ran": (np.bool_, ("K",), False),
    "draft_len": (np.int32, ("K",), 0),
    "accepted_len": (np.int32, ("K",), 0),
    "latency_s": (np.float64, ("K",), np.nan),
    "decision": (np.int8, ("K",), NOT_RUN),
    "predictions": (np.float32, ("K", "K"), np.nan),
    "features": (np.float32, ("K", "F"), np.nan),
    "final_stage": (np.int8, (), -1),
    "tokens": ("vlen_int32", (), None),
    "text": ("str", (), ""),
    "score": (np.float32, (), np.nan),
    "batch_id": (np.int64, (), -1),
    "batch_latency_s": (np.float64, (), np.nan),
}
JSON_ATTRS = ("config", "environment", "models", "cost_model")


def _h5_dtype(kind):
    import h5py

    if kind == "str":
        return h5py.string_dtype("utf-8")
    if kind == "vlen_int32":
        return h5py.vlen_dtype(np.dtype(np.int32))
    return np.dtype(kind)


def _shape(dims: tuple[str, ...], K: int, F: int) -> tuple[int, ...]:
    return tuple({"K": K, "F": F}[d] for d in dims)


def _attr_value(v: Any):
    if v is None:
        return "null"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return v
    return json.dumps(v, default=str)


def decode_attrs(attrs) -> dict:
    """h5py attributes → plain Python; JSON-valued attributes decoded."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, np.ndarray):
            v = [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
        if v == "null":
            v = None
        elif k in JSON_ATTRS and isinstance(v, str):
            with contextlib.suppress(json.JSONDecodeError):
                v = json.loads(v)
        out[k] = v
    return out


def check_schema(f, path) -> None:
    """Refuse a file written under another schema version (ValueError naming both)."""
    got = f.attrs.get("schema_version")
    if got is None or int(got) != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: trace schema version {got} but this asd reads version {SCHEMA_VERSION}; "
            f"regenerate the file or read it with the asd version that wrote it"
        )


def _objects(items: list) -> np.ndarray:
    """[B] object array holding ``items`` as they are (numpy would stack equal-length arrays into 2-d)."""
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


def normalise_batch(batch: dict[str, Any], K: int, F: int) -> dict[str, np.ndarray]:
    """Validate one batch of records (dict of arrays, first axis = samples) and fill absent fields.

    ``sample_id`` is required; any other field may be left out and gets its fill value (NaN, NOT_RUN, 0,
    "", no tokens). Rows are sorted by sample id. Errors name the field and the expected shape.
    """
    unknown = sorted(set(batch) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown trace field(s) {unknown}; valid fields: {list(FIELDS)}")
    if "sample_id" not in batch:
        raise ValueError("a trace batch needs 'sample_id' [B] int64")
    ids = np.asarray(batch["sample_id"])
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"sample_id must be a 1-d integer array [B], got {ids.dtype} {ids.shape}")
    B = len(ids)
    order = np.argsort(ids, kind="stable")
    if B > 1 and np.any(np.diff(ids[order]) == 0):
        raise ValueError(f"duplicate sample ids in a batch: {np.unique(ids[order][1:][np.diff(ids[order]) == 0])}")
    out: dict[str, np.ndarray] = {}
    for name, (kind, dims, fill) in FIELDS.items():
        shape = (B, *_shape(dims, K, F))
        if name not in batch:
            if kind == "vlen_int32":
                arr = _objects([np.zeros(0, np.int32) for _ in range(B)])
            elif kind == "str":
                arr = np.full(B, fill, dtype=object)
            else:
                arr = np.full(shape, fill, dtype=kind)
            out[name] = arr
            continue
        v = batch[name]
        if kind == "vlen_int32":
            if len(v) != B:
                raise ValueError(f"field 'tokens' has {len(v)} rows, expected {B}")
            arr = _objects([np.asarray(t, dtype=np.int32).reshape(-1) for t in v])
        elif kind == "str":
            if len(v) != B:
                raise ValueError(f"field {name!r} has {len(v)} rows, expected {B}")
            arr = _objects([x.decode() if isinstance(x, bytes) else str(x) for x in v])
        else:
            arr = np.asarray(v)
            if arr.shape != shape:
                raise ValueError(
                    f"field {name!r}: expected shape {shape} ([B{''.join(', ' + d for d in dims)}]"
                    f" with K={K}, F={F}), got {arr.shape}"
                )
            arr = arr.astype(kind, copy=False)
        out[name] = arr[order]
    return out


class TraceWriter:
    """Append batches of records to ``<path>.partial``; :meth:`close` renames it to ``path``.

    Example::

        with TraceWriter("shard-00000.h5", num_stages=4, feature_names=["entropy_mean", ...],
                         attrs=provenance(config=cfg, schema_version=SCHEMA_VERSION)) as w:
            w.append({"sample_id": ids, "ran": ran, ...})   # one flush per batch
    """

    def __init__(
        self,
        path: str | Path,
        num_stages: int,
        feature_names: Iterable[str],
        attrs: dict | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ):
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.K = int(num_stages)
        self.feature_names = [str(n) for n in feature_names]
        self.F = len(self.feature_names)
        if self.K < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        from asd.provenance import provenance

        self.f = h5py.File(self.tmp, "w")
        for k, v in {
            **provenance(),
            "config": None,
            "seed": -1,
            "lam": None,
            "models": None,
            "cost_model": None,
            **(attrs or {}),
        }.items():
            self.f.attrs[k] = _attr_value(v)
        self.f.attrs["schema_version"] = SCHEMA_VERSION
        self.f.attrs["num_stages"] = self.K
        self.f.attrs["num_features"] = self.F
        self.f.attrs["n_complete"] = 0
        self.f.attrs["complete"] = False
        for name, (kind, dims, _) in FIELDS.items():
            tail = _shape(dims, self.K, self.F)
            ds = self.f.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                chunks=(chunk_rows, *tuple(max(1, t) for t in tail)),
                dtype=_h5_dtype(kind),
            )
            if name == "features":
                ds.attrs["feature_names"] = json.dumps(self.feature_names)
        self.n = 0
        self.last_id: int | None = None
        self.f.flush()

    def append(self, batch: dict[str, Any]) -> int:
        """Write one batch (sample ids ascending beyond those written) and flush; returns rows written."""
        rec = normalise_batch(batch, self.K, self.F)
        B = len(rec["sample_id"])
        if B == 0:
            return 0
        if self.last_id is not None and rec["sample_id"][0] <= self.last_id:
            raise ValueError(
                f"{self.tmp}: sample ids must ascend across batches: got {rec['sample_id'][0]} after {self.last_id}"
            )
        for name, arr in rec.items():
            ds = self.f[name]
            ds.resize(self.n + B, axis=0)
            if name == "tokens" and len({len(t) for t in arr}) == 1:
                for i, t in enumerate(arr):  # h5py cannot write equal-length vlen rows (or one row) in one call
                    ds[self.n + i] = t
            else:
                ds[self.n : self.n + B] = arr
        self.n += B
        self.last_id = int(rec["sample_id"][-1])
        self.f.attrs["n_complete"] = self.n  # rows up to here are valid even if the process dies next
        self.f.flush()
        return B

    def close(self, complete: bool = True) -> Path:
        """Close; when ``complete``, mark the file complete and rename ``.partial`` → final name."""
        if self.f is None:
            return self.path
        if complete:
            self.f.attrs["complete"] = True
        self.f.close()
        self.f = None
        if complete:
            os.replace(self.tmp, self.path)
            return self.path
        return self.tmp

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


@dataclass
class Traces:
    """A trace file in memory: ``data[name]`` arrays (first axis = samples) and decoded ``attrs``."""

    data: dict[str, np.ndarray]
    attrs: dict
    feature_names: list[str]

    def __len__(self) -> int:
        return len(self.data["sample_id"])


def read_traces(
    path: str | Path, fields: Iterable[str] | None = None, rows: slice | None = None, allow_incomplete: bool = False
) -> Traces:
    """Read ``fields`` (default all) of a trace file into numpy; strings as ``str`` objects.

    Only the first ``n_complete`` rows are read (the rows a crashed writer flushed). A file not marked
    complete is refused unless ``allow_incomplete``.
    """
    import h5py

    names = list(FIELDS) if fields is None else list(fields)
    bad = [n for n in names if n not in FIELDS]
    if bad:
        raise ValueError(f"unknown trace field(s) {bad}; valid fields: {list(FIELDS)}")
    with h5py.File(path, "r") as f:
        check_schema(f, path)
        if not allow_incomplete and not bool(f.attrs.get("complete", False)):
            raise ValueError(
                f"{path}: trace file is incomplete (writer did not finish); "
                f"pass allow_incomplete=True to read its {int(f.attrs.get('n_complete', 0))} rows"
            )
        n = int(f.attrs.get("n_complete", len(f["sample_id"])))
        start, stop, _ = (0, n, 1) if rows is None else rows.indices(n)
        sl = slice(start, stop)
        data = {}
        for name in names:
            arr = f[name][sl]
            kind = FIELDS[name][0]
            if kind == "str":
                arr = np.array([x.decode() if isinstance(x, bytes) else x for x in arr], dtype=object)
            data[name] = arr
        attrs = decode_attrs(f.attrs)
        feature_names = json.loads(f["features"].attrs.get("feature_names", "[]"))
    return Traces(data=data, attrs=attrs, feature_names=feature_names)


def read_many(paths: Iterable[str | Path], fields: Iterable[str] | None = None) -> Traces:
    """Concatenate several complete trace files; refuses mixed schema versions or stage counts."""
    parts = [read_traces(p, fields) for p in paths]
    if not parts:
        raise ValueError("read_many: no files given")
    ks = {p.attrs.get("num_stages") for p in parts}
    if len(ks) != 1:
        raise ValueError(f"trace files disagree on num_stages: {sorted(ks)}")
    data = {k: np.concatenate([p.data[k] for p in parts]) for k in parts[0].data}
    return Traces(data=data, attrs=parts[0].attrs, feature_names=parts[0].feature_names)


def to_pandas(traces: Traces):
    """One row per sample; [N, K] fields become columns ``name_k``, predictions ``predictions_k_m``,
    features ``<feature name>_k``; tokens stay a column of arrays. Needs pandas (not a dependency)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_pandas needs pandas (pip install pandas); read_traces gives numpy") from e
    cols: dict[str, Any] = {}
    for name, arr in traces.data.items():
        if arr.ndim == 1:
            cols[name] = arr if arr.dtype != object or name != "tokens" else list(arr)
        elif arr.ndim == 2:
            for k in range(arr.shape[1]):
                cols[f"{name}_{k}"] = arr[:, k]
        elif name == "features":
            for k in range(arr.shape[1]):
                for j, fn in enumerate(traces.feature_names):
                    cols[f"{fn}_{k}"] = arr[:, k, j]
        else:
            for k in range(arr.shape[1]):
                for m in range(arr.shape[2]):
                    cols[f"{name}_{k}_{m}"] = arr[:, k, m]
    return pd.DataFrame(cols)


def _dtype_name(dt) -> str:
    import h5py

    if h5py.check_string_dtype(dt) is not None:
        return f"vlen str ({h5py.check_string_dtype(dt).encoding})"
    base = h5py.check_vlen_dtype(dt)
    return f"vlen {base}" if base is not None else str(dt)


def describe(path: str | Path) -> dict:
    """Schema, counts and provenance of a trace file (what ``asd inspect`` prints)."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = decode_attrs(f.attrs)
        n = int(attrs.get("n_complete", len(f["sample_id"])))
        schema = {
            name: {"dtype": _dtype_name(ds.dtype), "shape": list(ds.shape), "chunks": list(ds.chunks or [])}
            for name, ds in f.items()
        }
        counts = {"samples": n, "complete": bool(attrs.get("complete", False))}
        if n and "ran" in f and "final_stage" in f:
            ran = f["ran"][:n]
            counts["ran_per_stage"] = ran.sum(axis=0).tolist()
            fs = f["final_stage"][:n]
            counts["final_stage_histogram"] = np.bincount(fs[fs >= 0], minlength=ran.shape[1]).tolist()
            ids = f["sample_id"][:n]
            counts["sample_id_range"] = [int(ids.min()), int(ids.max())]
            sc = f["score"][:n]
            counts["scored"] = int(np.isfinite(sc).sum())
        feature_names = json.loads(f["features"].attrs.get("feature_names", "[]")) if "features" in f else []
    return {"path": str(path), "schema": schema, "counts": counts, "feature_names": feature_names, "attrs": attrs}
