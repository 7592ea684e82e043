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

Every dataset is chunked and resizable along samples; the fixed-size ones carry HDF5's built-in
Fletcher-32 filter (a damaged chunk fails to read in any HDF5 reader). File attributes: ``schema_version``,
``config`` (JSON), ``git_revision``, ``created_utc``, ``environment`` (JSON), ``seed``, ``lam``, ``models``
(JSON), ``cost_model`` (JSON), and the writer's ``num_stages``, ``num_features``, ``n_complete`` (rows
flushed), the checksums (``checksum_algorithm``, ``checksum_fields`` [D], ``checksum_rows`` [2] and
``checksums`` [2, D]: SHA-256 of every dataset's first rows at the last flush and at the one before; see
:func:`verify_checksums`) and ``complete`` (set when the writer closed cleanly).

:class:`TraceWriter` writes ``<path>.partial``, flushes after every batch and renames to ``<path>`` on
:meth:`TraceWriter.close`. Readers refuse a file of another ``SCHEMA_VERSION`` and a file whose data does not
match its checksums (:class:`TraceDamaged`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 3  # 3: batch_id, batch_latency_s; 2: Fletcher-32 + SHA-256 checksums; 1: neither
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
JSON_ATTRS = ("config", "environment", "models", "cost_model", "resources")
# Checksum attributes: fixed-size and rewritten in place at every flush (h5py ``attrs.modify``), so they live in
# the file's object header and a flush on a full disk cannot leave them unreadable (a variable-length string
# attribute lives in the global heap, which such a flush may leave past the end of the file).
CHECKSUMS_ATTR = "checksums"  # S64 [2, D]: hex digests per dataset, at the last flush (row 0) and the one before
CHECKSUM_ROWS_ATTR = "checksum_rows"  # int64 [2]: rows each row of CHECKSUMS_ATTR covers
CHECKSUM_FIELDS_ATTR = "checksum_fields"  # S [D]: the datasets, in the order of CHECKSUMS_ATTR's columns
CHECKSUM_ALGORITHM_ATTR = "checksum_algorithm"
CHECKSUM_ATTRS = (CHECKSUMS_ATTR, CHECKSUM_ROWS_ATTR, CHECKSUM_FIELDS_ATTR, CHECKSUM_ALGORITHM_ATTR)
CHECKSUM_ALGORITHM = "sha256"
VERIFY_ROWS = 65536  # rows per block when reading a dataset back to check it


class TraceDamaged(ValueError):
    """A trace file's data does not match the checksums stored with it (bytes changed on disk, a chunk that
    fails HDF5's Fletcher-32 check, or rows the header claims but the file does not hold)."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: damaged: {problem}")
        self.path, self.problem = str(path), problem

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@dataclass(frozen=True)
class Schema:
    """A columnar file layout that the writer, the jobs layer and the merge share.

    ``fields(K)`` is the field table (as ``FIELDS``) of a file over K stages; ``attrs(config)`` the file
    attributes derived from a run's loaded config sections (or None). Files carry ``schema`` (the name) and
    ``schema_version``; a step names its schema by a ``schema`` attribute (default: the traces).
    """

    name: str
    version: int
    fields: Callable[[int], dict]
    attrs: Callable[[dict], dict] | None = None


TRACES = Schema("asd-traces", SCHEMA_VERSION, lambda K: FIELDS)
# file schema name → "module:attr" of its Schema (files without a ``schema`` attribute are traces)
SCHEMAS = {"asd-traces": "asd.traces:TRACES", "asd-predictor-data": "asd.predictor_data.schema:SCHEMA"}


def get_schema(name: str) -> Schema:
    from asd.registry import resolve

    return resolve(SCHEMAS, name, "file schema")


def schema_name(f) -> str:
    """The ``schema`` attribute of an open file (``asd-traces`` when absent: files written before it existed)."""
    v = f.attrs.get("schema", TRACES.name)
    return v.decode() if isinstance(v, bytes) else str(v)


def schema_of(f) -> Schema:
    return get_schema(schema_name(f))


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
            if v.dtype.kind == "S":
                v = np.char.decode(v).tolist()
            else:
                v = [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
        if v == "null":
            v = None
        elif k in JSON_ATTRS and isinstance(v, str):
            with contextlib.suppress(json.JSONDecodeError):
                v = json.loads(v)
        out[k] = v
    return out


def check_schema(f, path, schema: Schema | None = None) -> None:
    """Refuse a file of another schema (``schema``; None: any known one) or version (ValueError naming both)."""
    name = schema_name(f)
    if schema is not None and name != schema.name:
        raise ValueError(f"{path}: a {name!r} file, not {schema.name!r}; read it with the reader of {name!r}")
    want = schema or get_schema(name)
    got = f.attrs.get("schema_version")
    if got is None or int(got) != want.version:
        what = "trace" if want is TRACES else want.name
        raise ValueError(
            f"{path}: {what} schema version {got} but this asd reads version {want.version}; "
            f"regenerate the file or read it with the asd version that wrote it"
        )


def _canonical(rows, dtype) -> tuple[bytes, bytes]:
    """(lengths, data): the bytes a checksum covers for ``rows`` (first axis = rows) of a dataset of h5py dtype
    ``dtype``, the same for the arrays a writer appends and the arrays h5py reads back. Fixed-size dtypes:
    no lengths, the little-endian C-order bytes. Variable-length strings (str or bytes items) and arrays: the
    item lengths as uint64 and the items' bytes concatenated. Concatenating blocks of rows concatenates both
    streams, so a digest does not depend on how rows were batched."""
    import h5py

    string = h5py.check_string_dtype(dtype)
    if string is not None:
        items = [x if isinstance(x, bytes) else str(x).encode(string.encoding) for x in rows]
        return np.array([len(b) for b in items], "<u8").tobytes(), b"".join(items)
    base = h5py.check_vlen_dtype(dtype)
    if base is not None:
        arrs = [np.asarray(x, dtype=base).reshape(-1) for x in rows]
        data = np.concatenate(arrs).astype(base.newbyteorder("<"), copy=False) if arrs else np.zeros(0, base)
        return np.array([len(a) for a in arrs], "<u8").tobytes(), data.tobytes()
    dt = np.dtype(dtype)
    return b"", np.ascontiguousarray(rows, dtype=dt.newbyteorder("<") if dt.byteorder != "|" else dt).tobytes()


class _FieldDigest:
    """Running SHA-256 of one dataset's rows (:func:`_canonical`); ``hexdigest`` of the rows so far."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lengths = hashlib.sha256()
        self.data = hashlib.sha256()

    def update(self, rows) -> None:
        lengths, data = _canonical(rows, self.dtype)
        self.lengths.update(lengths)
        self.data.update(data)

    def hexdigest(self) -> str:
        return hashlib.sha256(self.lengths.digest() + self.data.digest()).hexdigest()


def _digest_rows(ds, start: int, stop: int) -> str:
    """Hex digest of rows ``start:stop`` of h5py dataset ``ds``, read in blocks (h5py errors propagate)."""
    d = _FieldDigest(ds.dtype)
    for a in range(start, stop, VERIFY_ROWS):
        d.update(ds[a : min(a + VERIFY_ROWS, stop)])
    return d.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def _checkpoint_problem(f, rows: int, digests: dict[str, str], fields: Iterable[str] | None) -> str | None:
    """Why the first ``rows`` rows of open file ``f`` do not match ``digests`` ({dataset: hex}); None if they do."""
    names = list(digests) if fields is None else list(fields)
    for name in names:
        want = digests.get(name)
        if want is None or name not in f:
            return f"dataset {name!r} has no stored checksum" if name in f else f"dataset {name!r} is missing"
        ds = f[name]
        if ds.shape[0] < rows:
            return f"the header claims {rows} rows but dataset {name!r} holds {ds.shape[0]}"
        try:
            got = _digest_rows(ds, 0, rows)
        except (OSError, RuntimeError, ValueError, TypeError) as e:  # h5py: Fletcher-32 failure, read past EOF
            return f"dataset {name!r} is unreadable ({_first_line(e)})"
        if got != want:
            return f"dataset {name!r} does not match its {CHECKSUM_ALGORITHM} checksum (rows 0-{rows - 1})"
    return None


def stored_checksums(f) -> list[tuple[int, dict[str, str]]]:
    """The checkpoints stored in open trace file ``f``: [(rows, {dataset: hex digest})], the last flush first.
    ValueError if there are none or they cannot be read."""
    try:
        algorithm = f.attrs[CHECKSUM_ALGORITHM_ATTR]
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in f.attrs[CHECKSUM_FIELDS_ATTR]]
        rows = [int(r) for r in f.attrs[CHECKSUM_ROWS_ATTR]]
        sums = np.asarray(f.attrs[CHECKSUMS_ATTR])
    except KeyError as e:
        raise ValueError("no checksums stored") from e
    except (OSError, RuntimeError) as e:
        raise ValueError(f"checksums unreadable ({_first_line(e)})") from e
    algorithm = algorithm.decode() if isinstance(algorithm, bytes) else str(algorithm)
    if algorithm != CHECKSUM_ALGORITHM:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    if sums.shape != (len(rows), len(names)):
        raise ValueError(f"checksums of shape {sums.shape} for {len(rows)} checkpoints of {len(names)} datasets")
    return [(r, {n: d.decode() for n, d in zip(names, sums[i])}) for i, r in enumerate(rows)]


def verify_checksums(f, fields: Iterable[str] | None = None) -> tuple[int, str | None]:
    """Check the data of open trace file ``f`` (h5py) against its stored checksums.

    Returns ``(rows, problem)``. When the checkpoint of the last flush (written with ``n_complete``) holds,
    ``rows = n_complete`` and ``problem`` is None. Otherwise ``problem`` says what failed and ``rows`` is the
    row count of the flush before if that one holds (a writer that died during a flush, e.g. on a full disk,
    can leave a header ahead of its data), else 0. ``fields`` limits the check to some datasets.
    """
    try:
        points = stored_checksums(f)
        n = int(f.attrs["n_complete"])
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        return 0, str(e) if isinstance(e, ValueError) else f"header unreadable ({_first_line(e)})"
    (rows, digests), previous = points[0], points[1:]
    if rows != n:
        problem: str | None = f"n_complete is {n} but the checksums cover {rows} rows"
    else:
        problem = _checkpoint_problem(f, rows, digests, fields)
        if problem is None:
            return n, None
    for prev_rows, prev_digests in previous:
        if 0 < prev_rows < n and _checkpoint_problem(f, prev_rows, prev_digests, fields) is None:
            return prev_rows, problem
    return 0, problem


def _objects(items: list) -> np.ndarray:
    """[B] object array holding ``items`` as they are (numpy would stack equal-length arrays into 2-d)."""
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


def normalise_batch(batch: dict[str, Any], K: int, F: int, fields: dict | None = None) -> dict[str, np.ndarray]:
    """Validate one batch of records (dict of arrays, first axis = samples) and fill absent fields.

    ``sample_id`` is required; any other field may be left out and gets its fill value (NaN, NOT_RUN, 0,
    "", no tokens). Rows are sorted by sample id. Errors name the field and the expected shape.
    ``fields``: the schema's field table (default: the traces' ``FIELDS``).
    """
    fields = FIELDS if fields is None else fields
    unknown = sorted(set(batch) - set(fields))
    if unknown:
        what = "trace field(s)" if fields is FIELDS else "field(s)"
        raise ValueError(f"unknown {what} {unknown}; valid fields: {list(fields)}")
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
    for name, (kind, dims, fill) in fields.items():
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
                raise ValueError(f"field {name!r} has {len(v)} rows, expected {B}")
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
        schema: Schema = TRACES,
    ):
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.K = int(num_stages)
        self.feature_names = [str(n) for n in feature_names]
        self.F = len(self.feature_names)
        self.schema = schema
        self.fields = schema.fields(self.K)
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
        self.f.attrs["schema"] = schema.name
        self.f.attrs["schema_version"] = schema.version
        self.f.attrs["num_stages"] = self.K
        self.f.attrs["num_features"] = self.F
        self.f.attrs["n_complete"] = 0
        self.f.attrs["complete"] = False
        self._digests: dict[str, _FieldDigest] = {}
        for name, (kind, dims, _) in self.fields.items():
            tail = _shape(dims, self.K, self.F)
            dtype = _h5_dtype(kind)
            ds = self.f.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                chunks=(chunk_rows, *tuple(max(1, t) for t in tail)),
                dtype=dtype,
                fletcher32=dtype.kind != "O",  # HDF5 filters cannot apply to variable-length data
            )
            if name == "features":
                ds.attrs["feature_names"] = json.dumps(self.feature_names)
            self._digests[name] = _FieldDigest(ds.dtype)
        self.n = 0
        self.last_id: int | None = None
        self.f.attrs[CHECKSUM_ALGORITHM_ATTR] = CHECKSUM_ALGORITHM
        self.f.attrs[CHECKSUM_FIELDS_ATTR] = np.array([n.encode() for n in self._digests], dtype="S")
        empty = np.array([d.hexdigest().encode() for d in self._digests.values()], dtype="S64")
        self._last = (0, empty)
        self.f.attrs[CHECKSUM_ROWS_ATTR] = np.zeros(2, np.int64)
        self.f.attrs[CHECKSUMS_ATTR] = np.stack([empty, empty])
        self.f.flush()

    def _store_checksums(self) -> None:
        """Checksums of the rows written so far, beside those of the flush before (see verify_checksums);
        fixed-size attributes rewritten in place."""
        now = np.array([d.hexdigest().encode() for d in self._digests.values()], dtype="S64")
        self.f.attrs.modify(CHECKSUMS_ATTR, np.stack([now, self._last[1]]))
        self.f.attrs.modify(CHECKSUM_ROWS_ATTR, np.array([self.n, self._last[0]], np.int64))
        self._last = (self.n, now)

    def append(self, batch: dict[str, Any]) -> int:
        """Write one batch (sample ids ascending beyond those written) and flush; returns rows written."""
        rec = normalise_batch(batch, self.K, self.F, self.fields)
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
            if self.fields[name][0] == "vlen_int32" and len({len(t) for t in arr}) == 1:
                for i, t in enumerate(arr):  # h5py cannot write equal-length vlen rows (or one row) in one call
                    ds[self.n + i] = t
            else:
                ds[self.n : self.n + B] = arr
            self._digests[name].update(arr)
        self.n += B
        self.last_id = int(rec["sample_id"][-1])
        self._store_checksums()
        self.f.attrs.modify("n_complete", self.n)  # rows up to here are valid even if the process dies next
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
    path: str | Path,
    fields: Iterable[str] | None = None,
    rows: slice | None = None,
    allow_incomplete: bool = False,
    verify: bool = True,
) -> Traces:
    """Read ``fields`` (default all) of a trace file into numpy; strings as ``str`` objects.

    Only the first ``n_complete`` rows are read (the rows a crashed writer flushed). A file not marked
    complete is refused unless ``allow_incomplete``; of such a file only the rows its checksums vouch for are
    read (:func:`verify_checksums`). With ``verify`` (and all rows), each field read is checked against its
    stored checksum; a mismatch, or a chunk failing HDF5's Fletcher-32 check, raises :class:`TraceDamaged`.
    """
    import h5py

    names = list(FIELDS) if fields is None else list(fields)
    bad = [n for n in names if n not in FIELDS]
    if bad:
        raise ValueError(f"unknown trace field(s) {bad}; valid fields: {list(FIELDS)}")
    with h5py.File(path, "r") as f:
        check_schema(f, path, TRACES)
        complete = bool(f.attrs.get("complete", False))
        if not allow_incomplete and not complete:
            raise ValueError(
                f"{path}: trace file is incomplete (writer did not finish); "
                f"pass allow_incomplete=True to read its {int(f.attrs.get('n_complete', 0))} rows"
            )
        n = int(f.attrs.get("n_complete", len(f["sample_id"])))
        check = verify and rows is None
        if check and not complete:  # a partial file: its last flush may not have reached the disk
            n, problem = verify_checksums(f, names)
            if problem is not None and n == 0:
                raise TraceDamaged(path, problem)
            check = False
        start, stop, _ = (0, n, 1) if rows is None else rows.indices(n)
        sl = slice(start, stop)
        digests: dict[str, str] | None = None
        if check:
            try:
                last_rows, digests = stored_checksums(f)[0]
            except ValueError as e:
                raise TraceDamaged(path, str(e)) from e
            if last_rows != n:
                raise TraceDamaged(path, f"n_complete is {n} but the checksums cover {last_rows} rows")
        data = {}
        for name in names:
            try:
                arr = f[name][sl]
            except (OSError, RuntimeError) as e:  # a chunk failing Fletcher-32, data past the end of the file
                raise TraceDamaged(path, f"dataset {name!r} is unreadable ({_first_line(e)})") from e
            if digests is not None:
                d = _FieldDigest(f[name].dtype)
                d.update(arr)
                if d.hexdigest() != digests.get(name):
                    raise TraceDamaged(path, f"dataset {name!r} does not match its {CHECKSUM_ALGORITHM} checksum")
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
        raise ValueError(f"trace files disagree on num_stages: {sorted(ks, key=str)}")
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
    """Schema, counts, checksum verdict and provenance of a trace file (what ``asd inspect`` prints)."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = decode_attrs(f.attrs)
        n = int(attrs.get("n_complete", len(f["sample_id"])))
        schema = {
            name: {"dtype": _dtype_name(ds.dtype), "shape": list(ds.shape), "chunks": list(ds.chunks or [])}
            for name, ds in f.items()
        }
        counts: dict[str, Any] = {"samples": n, "complete": bool(attrs.get("complete", False))}
        if CHECKSUM_ALGORITHM_ATTR in f.attrs:
            ok, problem = verify_checksums(f)
            counts["checksums"] = f"ok ({CHECKSUM_ALGORITHM}, {ok} rows)" if problem is None else f"DAMAGED: {problem}"
        try:
            if n and "ran" in f and "final_stage" in f:
                ran = f["ran"][:n]
                counts["ran_per_stage"] = ran.sum(axis=0).tolist()
                fs = f["final_stage"][:n]
                counts["final_stage_histogram"] = np.bincount(fs[fs >= 0], minlength=ran.shape[1]).tolist()
                ids = f["sample_id"][:n]
                counts["sample_id_range"] = [int(ids.min()), int(ids.max())]
                sc = f["score"][:n]
                counts["scored"] = int(np.isfinite(sc).sum())
        except (OSError, RuntimeError) as e:  # damaged chunks: the verdict above says which dataset
            counts["unreadable"] = _first_line(e)
        feature_names = json.loads(f["features"].attrs.get("feature_names", "[]")) if "features" in f else []
    return {"path": str(path), "schema": schema, "counts": counts, "feature_names": feature_names, "attrs": attrs}
