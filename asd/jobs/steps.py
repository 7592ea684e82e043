"""Steps: the work a shard does on a batch of sample ids, named in the config as ``"module:function"``.

A step is ``step(sample_ids, config) -> records``: ``sample_ids`` [B] int64 ascending, ``config`` the run's
loaded sections (``{name: dataclass}``), ``records`` a dict of arrays per the trace schema
(:data:`asd.traces.FIELDS`; first axis = the B samples), plus an optional ``feature_names`` list.
It must be a pure function of (sample id, config): a rerun, a resumed shard or another shard count gives
the same rows. The cascade plugs in as another step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from asd.registry import import_spec
from asd.traces import NOT_RUN, STOP

SYNTHETIC_FEATURES = [
    "entropy_mean",
    "maxprob_mean",
    "margin_min",
    "logprob_last",
    "draft_len",
    "prompt_nll",
    "low_conf_frac",
    "accept_prev",
]
DATASETS = ("mmlu", "humaneval", "gsm8k", "truthfulqa")


def load_step(spec: str) -> Callable:
    """Import ``"module:function"``; ValueError naming the spec if it does not resolve to a callable."""
    fn = import_spec(spec, "step")
    if not callable(fn):
        raise ValueError(f"step {spec!r} is not callable")
    return fn


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def synthetic_sample(seed: int, sample_id: int, K: int, F: int) -> dict[str, Any]:
    """One sample's record from ``default_rng([seed, sample_id])`` (a latent-difficulty cascade).

    Difficulty d ~ N(0,1); stage k matches the final stage with r_k = sigmoid(0.8·k − 1.2·d) (r_{K−1} = 1);
    the cascade starts at stage 0 and jumps one stage up while the predicted r̂ of the current stage < 0.7.
    """
    rng = np.random.default_rng([seed, sample_id])
    d = rng.normal()
    r = _sigmoid(0.8 * np.arange(K) - 1.2 * d)
    r[-1] = 1.0
    prompt_len = int(rng.integers(16, 512))
    draft = rng.integers(8, 256, size=K).astype(np.int32)
    pred = np.full((K, K), np.nan, np.float32)
    feats = np.full((K, F), np.nan, np.float32)
    ran = np.zeros(K, bool)
    decision = np.full(K, NOT_RUN, np.int8)
    accepted = np.zeros(K, np.int32)
    latency = np.full(K, np.nan)
    k = 0
    while True:
        ran[k] = True
        pred[k, k:] = np.clip(r[k:] + rng.normal(0, 0.05, K - k), 0, 1)
        feats[k] = rng.normal(size=F).astype(np.float32) + d
        latency[k] = (0.01 + 0.002 * prompt_len / 64) * (1 + k) * (1 + 0.1 * rng.random())
        if k > 0:
            accepted[k] = int(draft[k - 1] * rng.random())
        if k == K - 1 or pred[k, k] >= 0.7:
            decision[k] = STOP
            break
        decision[k] = k + 1
        k += 1
    n_tok = int(draft[k])
    tokens = rng.integers(0, 32000, size=n_tok).astype(np.int32)
    return {
        "sample_id": sample_id,
        "dataset": DATASETS[sample_id % len(DATASETS)],
        "prompt_len": prompt_len,
        "ran": ran,
        "draft_len": np.where(ran, draft, 0).astype(np.int32),
        "accepted_len": accepted,
        "latency_s": latency,
        "decision": decision,
        "predictions": pred,
        "features": feats,
        "final_stage": k,
        "tokens": tokens,
        "text": f"sample {sample_id}: " + " ".join(map(str, tokens[:8])) + " …é",
        "score": np.float32(rng.random() < r[k]),
    }


def synthetic(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Deterministic pure step (no model): records for ``sample_ids`` [B] int64 per :func:`synthetic_sample`.

    Reads ``jobs.seed``; K = the hierarchy's stage count (4 without one); ``jobs.step_options``:
    ``num_features`` (default 8) and ``delay_s`` (sleep per batch, so tests can fault a task mid-run).
    """
    job = config["jobs"]
    h = config.get("hierarchy")
    K = h.num_stages if h is not None else 4
    F = int(job.step_options.get("num_features", len(SYNTHETIC_FEATURES)))
    delay = float(job.step_options.get("delay_s", 0.0))
    rows = [synthetic_sample(job.seed, int(i), K, F) for i in sample_ids]
    if delay > 0:
        time.sleep(delay)
    out: dict[str, Any] = {}
    for name in rows[0] if rows else ():
        vals = [row[name] for row in rows]
        if name in ("tokens", "text", "dataset"):
            out[name] = vals
        else:
            out[name] = np.stack([np.asarray(v) for v in vals])
    names = SYNTHETIC_FEATURES[:F] + [f"f{j}" for j in range(len(SYNTHETIC_FEATURES), F)]
    out["feature_names"] = names
    return out
