"""The predictor's training set: load the HDF5 file (schema ``asd-predictor-data`` v1), split it, build rows.

The file (written by ``asd generate-data``; docs/predictor_data.md) holds the full trace of every prompt: each
stage's features ``features [N, K, F]``, the labels ``agree_final [N, K]`` (r_k = 1 iff y_k equals the final
stage's output token for token) and ``accept_frac [N, K, K]`` (a_{k,m}, the fraction of y_k that M_m accepts,
k < m), plus lengths and scores. ``load_training_set`` reads the columns the trainer needs (``TRAINING_FIELDS``:
no tokens, so a file compacted by scripts/compact_predictor_data.py loads too) through the schema's one reader,
``asd.predictor_data.schema.read_predictor_data``, which does every check of the file, and adds the file's sha256.

Split: ``split_of`` hashes each sample's key (splitmix64 of the key xor the salt, as a fraction of 2^64) into
train / validation / test by the configured fractions: the same sample lands in the same split in every run,
whatever the file's order or size, and all K stages of a sample share it. The key is ``prompt_key`` (a hash
of the prompt text), so that a prompt used twice never sits on both sides, or ``sample_id``
(``TrainingSet.split_key``).

Rows: one row per (sample, stage k < K − 1): the input is stage k's features, the targets r_m for
k ≤ m < K − 1 and a_{j,m} for k ≤ j < m (the others are masked out of the loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asd.core.mlp import num_outputs, pair_index
from asd.data.base import file_sha256

SPLITS = ("train", "val", "test")
# what a row's r_m target is (``predictor_training.label``; docs/predictor.md "Labels"):
#   agree_final  r_m = 1 iff y_m equals the final stage's output token for token (the algorithm's definition)
#   no_worse     r_m = 1 iff y_m scores at least as well as the final stage's output (score_m >= score_{K-1}):
#                1 − r_m is then exactly the accuracy lost by stopping at m on this prompt
LABELS = ("agree_final", "no_worse")
# the datasets the trainer reads (schema asd-predictor-data v1)
TRAINING_FIELDS = (
    "sample_id",
    "task",
    "level",
    "prompt_len",
    "prompt_key",
    "features",
    "draft_len",
    "accept_frac",
    "agree_final",
    "score",
)

# NaN in a feature column becomes this value before normalisation (deterministic), and the checkpoint's
# normalisation records it. The reader refuses files with non-finite features (the generator records
# accept_ratio_prev = 1.0 at stage 0, as the cascade does: asd.core.features.stage_features), so on the rows of
# a file read here it replaces nothing; the values are the cascade's: accept_ratio_prev 1.0 (no previous
# draft), every other column 0.
NAN_FILL = {"accept_ratio_prev": 1.0}


def nan_fill_values(names: list[str]) -> np.ndarray:
    """[F] float64 fill value per column for NaN features."""
    return np.array([NAN_FILL.get(n, 0.0) for n in names], dtype=np.float64)


@dataclass
class TrainingSet:
    """The trainer's columns of one training-set file (N samples, K stages, F features)."""

    path: str
    sha256: str  # of the file's bytes
    attrs: dict  # root attributes (JSON ones decoded)
    feature_names: list[str]
    feature_schema_version: int
    stage_names: list[str]
    sample_id: np.ndarray  # [N] int64, strictly increasing
    task: np.ndarray  # [N] object (str)
    level: np.ndarray  # [N] int8
    prompt_len: np.ndarray  # [N] int32 tokens
    prompt_key: np.ndarray  # [N] int64 hash of the prompt text
    features: np.ndarray  # [N, K, F] float32, finite
    draft_len: np.ndarray  # [N, K] int32 tokens
    accept_frac: np.ndarray  # [N, K, K] float32 (NaN where k >= m)
    agree_final: np.ndarray  # [N, K] uint8
    score: np.ndarray  # [N, K] float32

    def labels(self, label: str = "agree_final") -> np.ndarray:
        """[N, K] uint8 r_m targets of every sample by ``label`` (one of ``LABELS``); column K − 1 is 1."""
        return target_labels(label, self.agree_final, self.score)

    def split_key(self, split_by: str = "auto") -> tuple[np.ndarray, str]:
        """([N] int64 key the split hashes, its name): ``prompt_key`` ("auto" or "prompt_key") or ``sample_id``.
        Hashing the prompt keeps a prompt that occurs twice inside one split."""
        if split_by == "sample_id":
            return self.sample_id, "sample_id"
        return self.prompt_key, "prompt_key"

    @property
    def K(self) -> int:
        return len(self.stage_names)

    @property
    def N(self) -> int:
        return int(self.sample_id.shape[0])


def load_training_set(path: str | Path) -> TrainingSet:
    """The trainer's columns of a training-set file, read and checked by
    ``asd.predictor_data.schema.read_predictor_data`` (ValueError naming the file for anything off-schema,
    another feature schema included; FileNotFoundError); ValueError for fewer than 2 stages."""
    from asd.predictor_data.schema import read_predictor_data

    d = read_predictor_data(path, list(TRAINING_FIELDS))
    if d.K < 2:
        raise ValueError(f"{path}: {d.K} stage(s) {d.stage_names}; a predictor needs K >= 2")
    x = d.data
    return TrainingSet(
        path=str(path),
        sha256=file_sha256(path),
        attrs=d.attrs,
        feature_names=d.feature_names,
        feature_schema_version=int(d.attrs["feature_schema_version"]),
        stage_names=d.stage_names,
        sample_id=x["sample_id"],
        task=x["task"],
        level=x["level"],
        prompt_len=x["prompt_len"],
        prompt_key=x["prompt_key"],
        features=x["features"],
        draft_len=x["draft_len"],
        accept_frac=x["accept_frac"],
        agree_final=x["agree_final"],
        score=x["score"],
    )


def target_labels(label: str, agree_final: np.ndarray, score: np.ndarray) -> np.ndarray:
    """[N, K] uint8 r_m targets by ``label`` (``LABELS``) from agree_final [N, K] (0/1) and score [N, K]."""
    if label == "agree_final":
        return np.asarray(agree_final).astype(np.uint8, copy=False)
    if label == "no_worse":
        score = np.asarray(score)
        return (score >= score[:, -1:]).astype(np.uint8)
    raise ValueError(f"label: unknown {label!r}; valid: {', '.join(LABELS)}")


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
    y_r: np.ndarray  # [R, K − 1] float32 r_m labels (labels(label)[n, m]), m = 0..K−2
    w_r: np.ndarray  # [R, K − 1] float32 1 where trained (m ≥ k)
    y_a: np.ndarray  # [R, P] float32 a_{j,m} labels per pair (pair_index), NaN → 0
    w_a: np.ndarray  # [R, P] float32 1 where trained (j ≥ k, label finite)

    def __len__(self) -> int:
        return int(self.stage.shape[0])

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """y [R, O], w [R, O]: r̂ then â columns, as the heads output them."""
        return np.concatenate([self.y_r, self.y_a], 1), np.concatenate([self.w_r, self.w_a], 1)


def cell_labels(task: np.ndarray, level: np.ndarray) -> np.ndarray:
    """[n] str "task|level": each prompt's (task, level) cell, from task [n] str and level [n] int."""
    return np.char.add(np.char.add(np.asarray(task).astype(str), "|"), np.asarray(level).astype(np.int64).astype(str))


def cell_weights(data: TrainingSet, samples: np.ndarray) -> np.ndarray:
    """[n] float64 weight n / (C · count of the sample's (task, level) cell among ``samples``), C cells present.

    Every cell then weighs the same in a weighted loss (the weights' mean is 1): the cell-balanced training of
    ``predictor_training.cell_balance`` (docs/predictor.md), for data whose cells hold very different counts.
    """
    samples = np.asarray(samples, dtype=np.int64)
    labels = cell_labels(np.asarray(data.task)[samples], np.asarray(data.level)[samples])  # [n]
    _, cell = np.unique(labels, return_inverse=True)
    count = np.bincount(cell)
    return samples.size / (count.size * count[cell].astype(np.float64))


def build_rows(
    data: TrainingSet, samples: np.ndarray, sample_weight: np.ndarray | None = None, label: str = "agree_final"
) -> Rows:
    """Rows of the given sample indices [n] (stage-major inside each sample); ``sample_weight`` [n] multiplies
    every trained target's weight (w_r, w_a) of the sample's rows (None: 1); ``label`` picks the r_m targets
    (``TrainingSet.labels``)."""
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
    m = np.arange(K - 1)
    y_r = data.labels(label)[idx][:, : K - 1].astype(np.float32)
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
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        assert sw.shape == (n,), "one weight per sample"
        rw = np.repeat(sw, K - 1).astype(np.float32)[:, None]
        w_r, w_a = w_r * rw, w_a * rw
    return Rows(x=x, stage=stage, sample=idx, y_r=y_r, w_r=w_r, y_a=y_a, w_a=w_a)


def fold_of(sample_id: np.ndarray, salt: int) -> np.ndarray:
    """[N] int8 0/1: the top bit of splitmix64(sample_id xor salt) (the calibration's two folds)."""
    ids = np.asarray(sample_id, dtype=np.int64).view(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return (splitmix64(ids) >> np.uint64(63)).astype(np.int8)
