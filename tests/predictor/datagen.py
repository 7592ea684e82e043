"""A small synthetic predictor training set (schema asd-predictor-data v1), written by the generator's writer.

For tests only: a latent difficulty per prompt decides which stages agree with the final one, and the features
see that difficulty through noise (so a predictor can learn something, but not everything). The file is what
``asd generate-data`` writes (asd.traces.TraceWriter with asd.predictor_data.schema.SCHEMA, the schema's
attributes, accept_ratio_prev = 1.0 at stage 0), only the numbers are made up.
"""
from __future__ import annotations

import numpy as np

from asd.core.features import FEATURE_NAMES
from asd.predictor_data.schema import SCHEMA, file_attrs, prompt_key
from asd.traces import TraceWriter

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
    feats[:, 0, col["accept_ratio_prev"]] = 1.0  # no previous draft: what the generator and the cascade record
    for k in range(1, K):
        feats[:, k, col["accept_ratio_prev"]] = acc[:, k - 1, k]
    ids = np.arange(first_id, first_id + N, dtype=np.int64)
    return dict(
        sample_id=ids,
        task=np.array([TASKS[i % 4] for i in range(N)], dtype=object),
        level=level,
        prompt_len=feats[:, 0, col["prompt_len"]].astype(np.int32),
        prompt_key=np.array([prompt_key(f"synthetic prompt {i}") for i in ids], np.int64),
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
    """Write a synthetic training set to ``path`` through the generator's writer; ``attrs`` then overwrite root
    attributes (None deletes one) and ``drop`` deletes datasets (tests of the reader's refusals)."""
    import h5py

    a = dict(arrays if arrays is not None else synth_arrays(N, K, seed))
    for k, toks in enumerate(a.pop("tokens", [])):
        a[f"tokens_{k}"] = toks
    root = {  # what the generator's shard writer adds to the writer's provenance (asd.jobs.shard, file_attrs)
        **file_attrs({}),
        "config": {"synthetic": True, "N": N, "seed": seed},
        "seed": seed,
        "stage_names": [f"testbed:s{k}" for k in range(K)],
        "stage_labels": [f"s{k}" for k in range(K)],
        "K": K,
        "max_new_tokens": 32,
        "source": "synthetic",
    }
    with TraceWriter(path, K, FEATURE_NAMES, root, schema=SCHEMA) as w:
        w.append(a)
    if attrs or drop:
        with h5py.File(path, "a") as f:
            for k, v in (attrs or {}).items():
                if v is None:
                    del f.attrs[k]
                else:
                    f.attrs[k] = v
            for name in drop:
                del f[name]
    return str(path)
