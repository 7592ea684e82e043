"""A small synthetic predictor training set in the HDF5 schema of asd.predictor.data (asd-predictor-data v1).

For tests only: a latent difficulty per prompt decides which stages agree with the final one, and the features
see that difficulty through noise (so a predictor can learn something, but not everything).
"""
from __future__ import annotations

import json

import numpy as np

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

TASKS = ("gsm8k", "mmlu", "humaneval", "truthfulqa")


def synth_arrays(N: int = 400, K: int = 4, seed: int = 0, first_id: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    F = len(FEATURE_NAMES)
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    level = rng.integers(1, 6, N).astype(np.int8)
    d = 0.5 * (level - 3) + rng.standard_normal(N)  # difficulty
    cap = np.linspace(-0.8, 1.2, K)  # stage capability
    agree = np.zeros((N, K), np.uint8)
    for k in range(K - 1):
        agree[:, k] = rng.random(N) < 1 / (1 + np.exp(-2.0 * (cap[k] - d)))
    agree[:, K - 1] = 1
    feats = np.zeros((N, K, F), np.float32)
    draft = rng.integers(4, 33, (N, K)).astype(np.int32)
    acc = np.full((N, K, K), np.nan, np.float32)
    acc_len = np.full((N, K, K), -1, np.int32)
    for k in range(K):
        margin = cap[k] - d + 0.6 * rng.standard_normal(N)
        f = feats[:, k]
        f[:, col["stage"]] = k
        f[:, col["prompt_len"]] = rng.integers(20, 200, N)
        f[:, col["prompt_nll"]] = 2.0 + 0.3 * d + 0.2 * rng.standard_normal(N)
        f[:, col["draft_len"]] = draft[:, k]
        f[:, col["ended_eos"]] = rng.random(N) < 0.8
        for a in ("mean", "min", "max", "last"):
            f[:, col[f"maxprob_{a}"]] = 1 / (1 + np.exp(-margin - 0.3 * rng.standard_normal(N)))
            f[:, col[f"entropy_{a}"]] = np.log1p(np.exp(-margin)) + 0.1 * rng.random(N)
            f[:, col[f"margin_{a}"]] = np.tanh(margin) + 0.2 * rng.standard_normal(N)
        f[:, col["low_conf_frac"]] = np.clip(0.5 - 0.2 * margin, 0, 1)
        f[:, col["mean_logprob"]] = -np.log1p(np.exp(-margin))
        f[:, col["digit_frac"]] = rng.random(N) * 0.3
        f[:, col["num_lines"]] = rng.integers(1, 5, N)
        f[:, col["nesting_depth"]] = rng.integers(0, 3, N)
        for i in range(16):
            f[:, col[f"hidden_{i}"]] = 0.3 * margin * ((i % 3) - 1) + rng.standard_normal(N)
        for m in range(k + 1, K):
            a = np.clip(0.55 + 0.4 * agree[:, k] * (m == K - 1) + 0.3 * np.tanh(margin) * 0.5
                        + 0.1 * rng.standard_normal(N), 0, 1)
            acc[:, k, m] = a
            acc_len[:, k, m] = np.round(a * draft[:, k])
            acc[:, k, m] = acc_len[:, k, m] / np.maximum(draft[:, k], 1)
    feats[:, 0, col["accept_ratio_prev"]] = np.nan
    for k in range(1, K):
        feats[:, k, col["accept_ratio_prev"]] = acc[:, k - 1, k]
    return dict(
        sample_id=np.arange(first_id, first_id + N, dtype=np.int64),
        task=np.array([TASKS[i % 4] for i in range(N)], dtype=object),
        level=level,
        prompt_len=feats[:, 0, col["prompt_len"]].astype(np.int32),
        features=feats,
        draft_len=draft,
        accepted_len=acc_len,
        accept_frac=acc,
        agree_final=agree,
        score=(rng.random((N, K)) < 0.3 + 0.1 * np.arange(K)).astype(np.float32),
        gen_latency_s=rng.random((N, K)) * 1e-3,
        verify_latency_s=np.where(np.isnan(acc), np.nan, 1e-4),
        batch_size=np.full(N, 32, np.int16),
        tokens=[[rng.integers(3, 100, draft[n, k]).astype(np.int32) for n in range(N)] for k in range(K)],
    )


def write_predictor_data(path, N: int = 400, K: int = 4, seed: int = 0, attrs: dict | None = None,
                         drop: tuple[str, ...] = (), arrays: dict | None = None) -> str:
    """Write a synthetic training set to ``path`` (schema asd-predictor-data v1); ``attrs`` override root attributes,
    ``drop`` leaves datasets out (tests of the reader's errors)."""
    import h5py

    a = arrays if arrays is not None else synth_arrays(N, K, seed)
    root = {
        "schema": "asd-predictor-data",
        "schema_version": 1,
        "config": json.dumps({"synthetic": True, "N": N, "seed": seed}),
        "git_revision": "test",
        "feature_names": json.dumps(FEATURE_NAMES),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "stage_names": json.dumps([f"testbed:s{k}" for k in range(K)]),
        "K": K,
        "max_new_tokens": 32,
        "seed": seed,
    }
    root.update(attrs or {})
    with h5py.File(path, "w") as f:
        for k, v in root.items():
            if v is not None:
                f.attrs[k] = v
        for name, v in a.items():
            if name in drop:
                continue
            if name == "task":
                f.create_dataset(name, data=np.array(v, dtype=object), dtype=h5py.string_dtype("utf-8"))
            elif name == "tokens":
                for k, toks in enumerate(v):
                    ds = f.create_dataset(f"tokens_{k}", (len(toks),), dtype=h5py.vlen_dtype(np.int32))
                    for i, t in enumerate(toks):
                        ds[i] = t
            else:
                f.create_dataset(name, data=v)
    return str(path)
