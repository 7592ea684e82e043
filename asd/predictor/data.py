"""The predictor's training set: read the HDF5 file (schema ``asd-predictor-data`` v1), split it, build rows.

The file (written by ``asd generate-data``; docs/predictor.md, "Training data") holds the full trace of every
prompt: each stage's features ``features [N, K, F]``, the labels ``agree_final [N, K]`` (r_k = 1 iff y_k equals
the final stage's output token for token) and ``accept_frac [N, K, K]`` (a_{k,m}, the fraction of y_k that M_m
accepts, k < m), plus lengths and scores.

Split: ``split_of`` hashes each sample's key (splitmix64 of the key xor the salt, as a fraction of 2^64) into
train / validation / test by the configured fractions: the same sample lands in the same split in every run,
whatever the file's order or size, and all K stages of a sample share it. The key is ``prompt_key`` (a hash
of the prompt text) when the file has it, so that a prompt used twice never sits on both sides, else
``sample_id`` (``PredictorData.split_key``).

Rows: one row per (sample, stage k < K − 1): the input is stage k's features, the targets r_m for
k ≤ m < K − 1 and a_{j,m} for k ≤ j < m (the others are masked out of the loss).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from asd.core.mlp import num_outputs, pair_index

SCHEMA = "asd-predictor-data"
SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")

# NaN in a feature column becomes this value before normalisation (deterministic). accept_ratio_prev is NaN at
# stage 0 (no previous draft) in the training data; the cascade's features record 1.0 there
# (asd.core.features.stage_features), so training sees what serving sees. Every other column: 0, what the
# cascade's decision path has always substituted (np.nan_to_num).
NAN_FILL = {"accept_ratio_prev": 1.0}


def nan_fill_values(names: list[str]) -> np.ndarray:
    """[F] float64 fill value per column for NaN features."""
    return np.array([NAN_FILL.get(n, 0.0) for n in names], dtype=np.float64)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class PredictorData:
    """One training-set file in memory (N samples, K stages, F features)."""

    path: str
    sha256: str
    attrs: dict  # root attributes (JSON ones decoded)
    feature_names: list[str]
    feature_schema_version: int
    stage_names: list[str]
    sample_id: np.ndarray  # [N] int64
    task: np.ndarray  # [N] object (str)
    level: np.ndarray  # [N] int8
    prompt_len: np.ndarray  # [N] int32 tokens
    features: np.ndarray  # [N, K, F] float32
    draft_len: np.ndarray  # [N, K] int32 tokens
    accept_frac: np.ndarray  # [N, K, K] float32 (NaN where k >= m)
    agree_final: np.ndarray  # [N, K] uint8
    score: np.ndarray  # [N, K] float32
    prompt_key: np.ndarray | None = None  # [N] int64 hash of the prompt text, when the file has it

    def split_key(self, split_by: str = "auto") -> tuple[np.ndarray, str]:
        """([N] int64 key the split hashes, its name): ``prompt_key`` ("auto": when the file has it) or
        ``sample_id``. Hashing the prompt keeps a prompt that occurs twice inside one split."""
        if split_by == "sample_id" or (split_by == "auto" and self.prompt_key is None):
            return self.sample_id, "sample_id"
        if self.prompt_key is None:
            raise ValueError(f"{self.path}: split_by prompt_key, but the file has no prompt_key dataset")
        return self.prompt_key, "prompt_key"

    @property
    def K(self) -> int:
        return len(self.stage_names)

    @property
    def N(self) -> int:
        return int(self.sample_id.shape[0])


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _json_attr(attrs, name: str, path) -> object:
    if name not in attrs:
        raise ValueError(f"{path}: missing root attribute {name!r} (schema {SCHEMA} v{SCHEMA_VERSION})")
    v = _attr(attrs[name])
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: root attribute {name!r} is not JSON ({e})") from e
    return v


REQUIRED = {  # dataset → (dims, dtype kinds accepted)
    "sample_id": (("N",), "iu"),
    "task": (("N",), "OSU"),
    "level": (("N",), "iu"),
    "prompt_len": (("N",), "iu"),
    "features": (("N", "K", "F"), "f"),
    "draft_len": (("N", "K"), "iu"),
    "accept_frac": (("N", "K", "K"), "f"),
    "agree_final": (("N", "K"), "iub"),
    "score": (("N", "K"), "f"),
}


def read_predictor_data(path: str | Path) -> PredictorData:
    """Read and check a training-set file; ValueError naming the file and the field for anything off-schema."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such training-data file")
    with h5py.File(path, "r") as f:
        attrs = {k: _attr(f.attrs[k]) for k in f.attrs}
        schema = attrs.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"{path}: schema {schema!r} is not a predictor training set (expected {SCHEMA!r})")
        ver = attrs.get("schema_version")
        if ver != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {ver!r}; this reader reads version {SCHEMA_VERSION}")
        if attrs.get("complete") is not None and not bool(attrs["complete"]):
            raise ValueError(f"{path}: the writer did not close the file cleanly (attribute complete = false)")
        names = _json_attr(attrs, "feature_names", path)
        stages = _json_attr(attrs, "stage_names", path)
        fsv = _json_attr(attrs, "feature_schema_version", path)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{path}: feature_names must be a JSON list of strings")
        if not (isinstance(stages, list) and len(stages) >= 2):
            raise ValueError(f"{path}: stage_names must be a JSON list of >= 2 names")
        K, F = len(stages), len(names)
        if "K" in attrs and int(attrs["K"]) != K:
            raise ValueError(f"{path}: attribute K={attrs['K']} but {K} stage_names")
        missing = [d for d in REQUIRED if d not in f]
        if missing:
            raise ValueError(f"{path}: missing datasets {missing} (schema {SCHEMA} v{SCHEMA_VERSION})")
        N = int(f["sample_id"].shape[0])
        n_ok = int(attrs.get("n_complete", N))
        dims = {"N": N, "K": K, "F": F}
        data = {}
        for name, (shape, kinds) in REQUIRED.items():
            ds = f[name]
            want = tuple(dims[d] for d in shape)
            if ds.shape != want:
                raise ValueError(f"{path}: dataset {name!r} has shape {ds.shape}, expected {want} ({shape})")
            if ds.dtype.kind not in kinds:
                raise ValueError(f"{path}: dataset {name!r} has dtype {ds.dtype}, expected kind {kinds!r}")
            arr = ds[:n_ok]
            if name == "task":
                arr = np.array([t.decode() if isinstance(t, bytes) else str(t) for t in arr], dtype=object)
            data[name] = arr
        if "prompt_key" in f:
            if f["prompt_key"].shape != (N,) or f["prompt_key"].dtype.kind not in "iu":
                raise ValueError(f"{path}: dataset 'prompt_key' must be an integer array of shape ({N},)")
            data["prompt_key"] = f["prompt_key"][:n_ok].astype(np.int64)
    if isinstance(attrs.get("config"), str):  # the generating config, JSON by the contract
        with contextlib.suppress(json.JSONDecodeError):
            attrs["config"] = json.loads(attrs["config"])
    sid = data["sample_id"].astype(np.int64)
    if sid.size and (np.diff(sid) <= 0).any():
        raise ValueError(f"{path}: sample_id must be strictly increasing")
    return PredictorData(
        path=str(path),
        sha256=file_sha256(path),
        attrs=attrs,
        feature_names=list(names),
        feature_schema_version=int(fsv),  # type: ignore[call-overload]
        stage_names=[str(s) for s in stages],
        sample_id=sid,
        task=data["task"],
        level=data["level"].astype(np.int8),
        prompt_len=data["prompt_len"].astype(np.int32),
        features=data["features"].astype(np.float32),
        draft_len=data["draft_len"].astype(np.int32),
        accept_frac=data["accept_frac"].astype(np.float32),
        agree_final=data["agree_final"].astype(np.uint8),
        score=data["score"].astype(np.float32),
        prompt_key=data.get("prompt_key"),
    )


def check_feature_schema(data: PredictorData) -> None:
    """ValueError when the file's features are not the ones this code computes (names or schema version)."""
    if data.feature_schema_version != FEATURE_SCHEMA_VERSION or data.feature_names != FEATURE_NAMES:
        raise ValueError(
            f"{data.path}: feature schema v{data.feature_schema_version} with {len(data.feature_names)} columns; "
            f"this code computes schema v{FEATURE_SCHEMA_VERSION} with {len(FEATURE_NAMES)} columns "
            "(asd.core.features.FEATURE_NAMES): regenerate the data"
        )


def splitmix64(x: np.ndarray) -> np.ndarray:
    """[N] uint64 splitmix64 finaliser of [N] uint64 (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_of(sample_id: np.ndarray, fractions=(0.70, 0.15, 0.15), salt: int = 0) -> np.ndarray:
    """[N] int8 split per sample id: 0 train, 1 validation, 2 test.

    u = splitmix64(sample_id xor salt) / 2^64 ∈ [0, 1); train if u < f_train, validation if u < f_train + f_val,
    test otherwise.
    """
    ids = np.asarray(sample_id, dtype=np.int64).view(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        h = splitmix64(ids)
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    a, b = fractions[0], fractions[0] + fractions[1]
    return np.where(u < a, 0, np.where(u < b, 1, 2)).astype(np.int8)


@dataclass
class Rows:
    """Training rows of one split: one per (sample, stage k < K − 1)."""

    x: np.ndarray  # [R, F] float32 features, NaN filled (nan_fill_values)
    stage: np.ndarray  # [R] int64
    sample: np.ndarray  # [R] int64 index into the data's samples
    y_r: np.ndarray  # [R, K − 1] float32 r_m labels (agree_final[n, m]), m = 0..K−2
    w_r: np.ndarray  # [R, K − 1] float32 1 where trained (m ≥ k)
    y_a: np.ndarray  # [R, P] float32 a_{j,m} labels per pair (pair_index), NaN → 0
    w_a: np.ndarray  # [R, P] float32 1 where trained (j ≥ k, label finite)

    def __len__(self) -> int:
        return int(self.stage.shape[0])

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """y [R, O], w [R, O]: r̂ then â columns, as the heads output them."""
        return np.concatenate([self.y_r, self.y_a], 1), np.concatenate([self.w_r, self.w_a], 1)


def build_rows(data: PredictorData, samples: np.ndarray) -> Rows:
    """Rows of the given sample indices [n] (stage-major inside each sample)."""
    K = data.K
    samples = np.asarray(samples, dtype=np.int64)
    n = samples.size
    fill = nan_fill_values(data.feature_names).astype(np.float32)
    idx = np.repeat(samples, K - 1)  # [R]
    stage = np.tile(np.arange(K - 1, dtype=np.int64), n)
    x = data.features[idx, stage].copy()  # [R, F]
    bad = np.isnan(x)
    if bad.any():
        x[bad] = np.broadcast_to(fill, x.shape)[bad]
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"{data.path}: feature {data.feature_names[c]!r} of sample {data.sample_id[idx[r]]} stage {stage[r]} is "
            f"{x[r, c]} (infinite features are not trainable)"
        )
    m = np.arange(K - 1)
    y_r = data.agree_final[idx][:, : K - 1].astype(np.float32)
    w_r = (m[None, :] >= stage[:, None]).astype(np.float32)
    P = num_outputs(K) - (K - 1)
    y_a = np.zeros((idx.size, P), np.float32)
    w_a = np.zeros((idx.size, P), np.float32)
    for j in range(K - 1):
        for mm in range(j + 1, K):
            p = pair_index(j, mm, K)
            a = data.accept_frac[idx, j, mm]
            ok = np.isfinite(a) & (stage <= j)
            y_a[:, p] = np.where(ok, np.clip(a, 0.0, 1.0), 0.0)
            w_a[:, p] = ok
    return Rows(x=x, stage=stage, sample=idx, y_r=y_r, w_r=w_r, y_a=y_a, w_a=w_a)


def fold_of(sample_id: np.ndarray, salt: int) -> np.ndarray:
    """[N] int8 0/1: the top bit of splitmix64(sample_id xor salt) (the calibration's two folds)."""
    ids = np.asarray(sample_id, dtype=np.int64).view(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return (splitmix64(ids) >> np.uint64(63)).astype(np.int8)
