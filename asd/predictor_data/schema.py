"""The training-set schema of the quality predictor (HDF5, columnar; docs/predictor_data.md).

One file per run (the jobs layer writes one per shard and merges them), N samples sorted by ``sample_id``,
K stages, F features. Written by asd.traces' writer with this module's field table (``SCHEMA``), so it is
flushed per batch, renamed from ``.partial`` when complete and carries the run's provenance.

``read_predictor_data(path, fields)`` reads one (every field, or the ones asked for: a file without the others,
e.g. one compacted by scripts/compact_predictor_data.py, reads too) and refuses, with a message naming the file
and the problem: a file of another schema (e.g. cascade traces) or version, an incomplete file, an empty one, a
feature schema other than this asd's, a missing dataset or one of another shape or dtype than the field table's,
sample ids not strictly increasing, and non-finite features. ``check_records`` applies the empty and finite
checks to a batch before it is written. The files' consumers (``asd generate-data``'s summary, the predictor's
trainer asd.predictor.data) read through it; there is no second reader.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from asd.traces import Schema

SCHEMA_NAME = "asd-predictor-data"
SCHEMA_VERSION = 1
# the files' feature_schema_version is asd.core.features.FEATURE_SCHEMA_VERSION: one constant for the data, the
# predictors and the cascade (bump it there with FEATURE_NAMES)
# attributes the generator adds to the writer's provenance (JSON where marked)
JSON_ATTRS = ("config", "environment", "models", "cost_model", "feature_names", "stage_names", "stage_labels")


def fields(K: int) -> dict[str, tuple[Any, tuple[str, ...], Any]]:
    """name → (dtype or "str"/"vlen_int32", trailing dims in K/F, fill value) of a file over K stages."""
    table: dict[str, tuple[Any, tuple[str, ...], Any]] = {
        "sample_id": (np.int64, (), None),
        "task": ("str", (), ""),
        "level": (np.int8, (), 0),
        "prompt_len": (np.int32, (), 0),
        "prompt_key": (np.int64, (), 0),
        "repeat": (np.int16, (), 0),
        "features": (np.float32, ("K", "F"), np.nan),
        "draft_len": (np.int32, ("K",), 0),
        "accepted_len": (np.int32, ("K", "K"), -1),
        "accept_frac": (np.float32, ("K", "K"), np.nan),
        "agree_final": (np.uint8, ("K",), 0),
        "score": (np.float32, ("K",), np.nan),
        "gen_latency_s": (np.float64, ("K",), np.nan),
        "verify_latency_s": (np.float64, ("K", "K"), np.nan),
        "batch_size": (np.int16, (), 0),
    }
    for k in range(K):
        table[f"tokens_{k}"] = ("vlen_int32", (), None)
    return table


def file_attrs(config: dict) -> dict:
    """Root attributes derived from a run's loaded config sections (beside the writer's provenance)."""
    hier = config.get("hierarchy")
    gen = config.get("predictor_data")
    out: dict[str, Any] = {
        "feature_names": list(FEATURE_NAMES),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
    }
    if hier is not None:
        out.update(
            stage_names=[s.model for s in hier.stages],
            stage_labels=[s.name for s in hier.stages],
            K=len(hier.stages),
        )
    if gen is not None:
        out.update(max_new_tokens=gen.max_new_tokens, source=gen.source)
    return out


SCHEMA = Schema(SCHEMA_NAME, SCHEMA_VERSION, fields, file_attrs)


def prompt_key(text: str) -> int:
    """int64 key of a prompt's text: equal prompts, equal keys (split by it to keep repeats together)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def check_records(rec: dict, where: str = "batch") -> None:
    """ValueError, before anything is written, for an empty batch or non-finite features (rows and columns named)."""
    ids = np.asarray(rec.get("sample_id", []))
    if ids.size == 0:
        raise ValueError(f"{where}: no samples (an empty result is not a training set)")
    f = np.asarray(rec["features"])
    bad = ~np.isfinite(f)
    if bad.any():
        n, k, j = (int(x[0]) for x in np.nonzero(bad))
        cols = sorted({FEATURE_NAMES[c] for c in np.nonzero(bad)[2]})
        raise ValueError(
            f"{where}: {int(bad.any(axis=(1, 2)).sum())} sample(s) have non-finite features, e.g. sample "
            f"{int(ids[n])} stage {k} column {FEATURE_NAMES[j]!r} = {f[n, k, j]}; columns affected: {cols}"
        )


@dataclass
class PredictorData:
    """A training-set file in memory: ``data[name]`` arrays (first axis = samples) and decoded ``attrs``."""

    data: dict[str, np.ndarray]
    attrs: dict
    feature_names: list[str]
    stage_names: list[str]

    def __len__(self) -> int:
        return len(self.data["sample_id"])

    @property
    def K(self) -> int:
        return len(self.stage_names)


def _attrs(f) -> dict:
    from asd.traces import decode_attrs

    a = decode_attrs(f.attrs)
    for k in JSON_ATTRS:
        if isinstance(a.get(k), str):
            with contextlib.suppress(json.JSONDecodeError):
                a[k] = json.loads(a[k])
    return a


def _check_dataset(path: Path, name: str, ds, kind, tail: tuple[int, ...], n: int) -> None:
    """ValueError when dataset ``name`` is not [>= n, *tail] of the field table's dtype."""
    import h5py

    if ds.shape[1:] != tail or ds.shape[0] < n:
        raise ValueError(f"{path}: dataset {name!r} has shape {ds.shape}, expected {(n, *tail)}")
    if kind == "str":
        ok, want = h5py.check_string_dtype(ds.dtype) is not None, "vlen str"
    elif kind == "vlen_int32":
        ok, want = h5py.check_vlen_dtype(ds.dtype) == np.dtype(np.int32), "vlen int32"
    else:
        ok, want = ds.dtype == np.dtype(kind), str(np.dtype(kind))
    if not ok:
        raise ValueError(f"{path}: dataset {name!r} has dtype {ds.dtype}, expected {want}")


def read_predictor_data(path: str | Path, fields_: list[str] | None = None, check_finite: bool = True) -> PredictorData:
    """Read a training-set file (all fields, or ``fields_``; ``sample_id`` always) into numpy, after checking it.

    Only the asked-for datasets need to be in the file (a compacted file has no ``tokens_*``). Errors
    (ValueError naming the file): not an HDF5 file; another schema (cascade traces, ...) or schema version;
    another feature schema version or feature names than this asd's; stage_names of another length than
    num_stages; incomplete; no samples; an unknown field; a missing dataset, or one of another shape or dtype
    than the field table's; sample ids not strictly increasing; non-finite features (``check_finite``).
    """
    import h5py

    from asd.traces import check_schema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such training-set file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        check_schema(f, path, SCHEMA)
        attrs = _attrs(f)
        if int(attrs.get("feature_schema_version", -1)) != FEATURE_SCHEMA_VERSION or attrs.get("feature_names") != list(
            FEATURE_NAMES
        ):
            raise ValueError(
                f"{path}: feature schema {attrs.get('feature_schema_version')} "
                f"({len(attrs.get('feature_names') or [])} features) but this asd computes feature schema "
                f"{FEATURE_SCHEMA_VERSION} ({len(FEATURE_NAMES)} features); regenerate the data"
            )
        if not bool(attrs.get("complete", False)):
            raise ValueError(f"{path}: incomplete file (its writer did not finish); rerun the generation to finish it")
        n = int(attrs.get("n_complete", 0))
        if n == 0:
            raise ValueError(f"{path}: the file holds no samples")
        K = int(attrs["num_stages"])
        stage_names = attrs.get("stage_names") or [str(k) for k in range(K)]
        if len(stage_names) != K:
            raise ValueError(f"{path}: {len(stage_names)} stage_names {stage_names} but num_stages = {K}")
        table = fields(K)
        names = list(table) if fields_ is None else ["sample_id", *(x for x in fields_ if x != "sample_id")]
        bad = [x for x in names if x not in table]
        if bad:
            raise ValueError(f"unknown field(s) {bad}; valid fields: {list(table)}")
        missing = [x for x in names if x not in f]
        if missing:
            hint = " (a compacted file: read it with a list of the fields it has)" if "compacted_from" in attrs else ""
            raise ValueError(f"{path}: missing dataset(s) {missing} of schema {SCHEMA_NAME} v{SCHEMA_VERSION}{hint}")
        data: dict[str, np.ndarray] = {}
        for name in names:
            kind, dims, _ = table[name]
            tail = tuple({"K": K, "F": len(FEATURE_NAMES)}[d] for d in dims)
            _check_dataset(path, name, f[name], kind, tail, n)
            arr = f[name][:n]
            if kind == "str":
                arr = np.array([x.decode() if isinstance(x, bytes) else x for x in arr], dtype=object)
            data[name] = arr
    ids = data["sample_id"]
    if (np.diff(ids) <= 0).any():
        i = int(np.flatnonzero(np.diff(ids) <= 0)[0])
        raise ValueError(f"{path}: sample_id must be strictly increasing; row {i + 1} has {ids[i + 1]} after {ids[i]}")
    out = PredictorData(data, attrs, list(attrs["feature_names"]), [str(s) for s in stage_names])
    if check_finite and "features" in data:
        check_records({"sample_id": ids, "features": data["features"]}, str(path))
    return out


def to_pandas(d: PredictorData):
    """One row per sample, flat columns: ``<feature>_k``, ``<field>_k``, ``<field>_k_m``, ``tokens_k`` (arrays).

    Needs pandas (not a dependency of asd)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_pandas needs pandas (pip install pandas); read_predictor_data gives numpy") from e
    cols: dict[str, Any] = {}
    for name, arr in d.data.items():
        if arr.ndim == 1:
            cols[name] = list(arr) if name.startswith("tokens_") else arr
        elif name == "features":
            for k in range(arr.shape[1]):
                for j, fn in enumerate(d.feature_names):
                    cols[f"{fn}_{k}"] = arr[:, k, j]
        elif arr.ndim == 2:
            for k in range(arr.shape[1]):
                cols[f"{name}_{k}"] = arr[:, k]
        else:
            for k in range(arr.shape[1]):
                for m in range(arr.shape[2]):
                    cols[f"{name}_{k}_{m}"] = arr[:, k, m]
    return pd.DataFrame(cols)
