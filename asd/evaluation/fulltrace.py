"""Full per-stage traces: every stage's response to every prompt (the generate-data format), read and built here.

The format (one HDF5 file, N rows sorted by ``sample_id``, K stages, F features; root attributes ``schema`` =
"asd-predictor-data", ``schema_version`` = 1, ``feature_names``, ``stage_names``, ``K``; docs/evaluation.md):
``sample_id`` [N], ``task`` [N] str, ``prompt_len`` [N], ``features`` [N, K, F] (stage k's features of its own
response y_k as the cascade records them on the route 0 → 1 → … → k), ``draft_len`` [N, K] = |y_k|,
``accepted_len`` [N, K, K] (tokens of y_j that M_m accepts, j < m; -1 elsewhere), ``agree_final`` [N, K]
(y_k == y_{K-1}), ``score`` [N, K] (the task score of y_k), ``tokens_k`` [N] vlen (y_k), ``gen_latency_s``
[N, K] and ``verify_latency_s`` [N, K, K] (per-sample shares of the batched calls' seconds), ``batch_size``.

``read(path)`` reads such a file (the data generator's, or ``build``'s) and checks it. ``build`` makes one
by running every stage through the cascade's own engines (greedy): the features along the adjacent route
from the cascade under ``fixed_depth`` to the last stage; each y_k from the cascade under ``single`` k;
every acceptance a_{j,m} from M_m teacher-forcing y_j. It is small and slow — the stand-in for the data
generator in tests and on small prompt sets. ``write`` stores it (columnar, ``.partial`` then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "asd-predictor-data"
SCHEMA_VERSION = 1
REQUIRED = ("sample_id", "task", "prompt_len", "features", "draft_len", "accepted_len", "agree_final", "score")


@dataclass
class FullTraces:
    """A full-trace file in memory (arrays as in the module docstring) and its attributes."""

    data: dict[str, Any]
    attrs: dict[str, Any]
    path: str = ""

    @property
    def K(self) -> int:
        return int(self.data["draft_len"].shape[1])

    def __len__(self) -> int:
        return len(self.data["sample_id"])

    def tokens(self, k: int) -> np.ndarray:
        """[N] object array of y_k (int32 token ids)."""
        return self.data[f"tokens_{k}"]


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def read(path: str | Path) -> FullTraces:
    """Read and check a full-trace file (ValueError naming the file: schema, completeness, fields, features)."""
    import h5py

    from asd.core.features import FEATURE_NAMES

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: full-trace file not found (asd generate-data writes one)")
    with h5py.File(p, "r") as f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("schema") != SCHEMA or int(attrs.get("schema_version", -1)) != SCHEMA_VERSION:
            raise ValueError(
                f"{p}: schema {attrs.get('schema')!r} v{attrs.get('schema_version')}, not {SCHEMA!r} "
                f"v{SCHEMA_VERSION}: replay reads full per-stage traces (asd generate-data)"
            )
        if not bool(attrs.get("complete", False)):
            raise ValueError(f"{p}: the file is incomplete (its writer did not finish)")
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise ValueError(f"{p}: missing field(s) {missing}")
        n = int(attrs.get("n_complete", f["sample_id"].shape[0]))
        K = int(f["draft_len"].shape[1])
        data: dict[str, Any] = {}
        for name in (*REQUIRED, "gen_latency_s", "verify_latency_s", "batch_size", "accept_frac", "level"):
            if name in f:
                data[name] = f[name][:n]
        for k in range(K):
            if f"tokens_{k}" not in f:
                raise ValueError(f"{p}: missing field tokens_{k} (every stage's response is needed to replay)")
            data[f"tokens_{k}"] = f[f"tokens_{k}"][:n]
    data["task"] = np.array([t.decode() if isinstance(t, bytes) else str(t) for t in data["task"]], dtype=object)
    names = attrs.get("feature_names")
    names = json.loads(names) if isinstance(names, str) else names
    if list(names or []) != FEATURE_NAMES:
        raise ValueError(
            f"{p}: features {len(names or [])} columns {list(names or [])[:3]}…; this asd computes "
            f"{len(FEATURE_NAMES)} ({FEATURE_NAMES[:3]}…): regenerate the file"
        )
    for key in ("stage_names", "stage_params"):
        if isinstance(attrs.get(key), str):
            attrs[key] = json.loads(attrs[key])
    if np.any(np.diff(data["sample_id"]) <= 0):
        raise ValueError(f"{p}: sample_id must be strictly ascending")
    return FullTraces(data, attrs, str(p))


def write(path: str | Path, data: dict[str, Any], attrs: dict[str, Any]) -> Path:
    """Write ``data`` (the module docstring's fields) to ``path`` (``.partial`` first, then renamed)."""
    import h5py

    from asd.provenance import provenance

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial")
    N = len(data["sample_id"])
    with h5py.File(tmp, "w") as f:
        for k, v in {**provenance(), **attrs}.items():
            f.attrs[k] = json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) or v is None else v
        f.attrs["schema"], f.attrs["schema_version"] = SCHEMA, SCHEMA_VERSION
        for name, v in data.items():
            if name.startswith("tokens_"):
                ds = f.create_dataset(name, (N,), dtype=h5py.vlen_dtype(np.dtype(np.int32)))
                for i, t in enumerate(v):
                    ds[i] = np.asarray(t, np.int32)
            elif name == "task":
                f.create_dataset(name, data=np.array(list(v), dtype=object), dtype=h5py.string_dtype("utf-8"))
            else:
                f.create_dataset(name, data=np.asarray(v))
        f.attrs["n_complete"], f.attrs["complete"] = N, True
    os.replace(tmp, p)
    return p


def build(
    engines,
    tokenizer,
    prompts: list[list[int]],  # N prompts (token ids)
    sample_ids: np.ndarray,  # [N] int64 ascending
    tasks: list[str],  # N task names
    score_fn,  # (k, texts N) -> [N] float scores of y_k
    max_new_tokens: int,
    eos_token_ids: tuple[int, ...],
    stage_names: list[str],  # [K] the hierarchy's stage models
    batch_size: int = 32,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arrays, attributes) of the format for ``prompts``: every stage's response, features and acceptances (greedy).

    The attribute ``route_length_mismatches`` counts (sample, stage) pairs whose |y_k| alone differs from
    |y_k| on the adjacent route (0 when the cascade is lossless token for token, as it is greedy on CPU).
    """
    from asd.cascade import Cascade, CascadeConfig
    from asd.core.dp import PolicyConfig
    from asd.core.verify import accept_drafts
    from asd.models.base import GenerationParams

    K, N = len(engines), len(prompts)
    ids = np.asarray(sample_ids, np.int64)
    cfg = CascadeConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)

    def run(policy: PolicyConfig) -> dict:
        return Cascade(engines, cfg, policy, tokenizer=tokenizer, eos_token_ids=eos_token_ids).run(
            prompts, ids.tolist()
        )

    route = run(PolicyConfig(name="fixed_depth", stage=K - 1))  # features on the adjacent route 0 → … → K−1
    bsize = np.concatenate([np.full(min(batch_size, N - s), min(batch_size, N - s)) for s in range(0, N, batch_size)])
    out: dict[str, Any] = {
        "sample_id": ids,
        "task": list(tasks),
        "prompt_len": np.array([len(p) for p in prompts], np.int32),
        "features": route["features"].astype(np.float32),
        "draft_len": np.zeros((N, K), np.int32),
        "accepted_len": np.full((N, K, K), -1, np.int32),
        "accept_frac": np.full((N, K, K), np.nan, np.float32),
        "agree_final": np.zeros((N, K), np.uint8),
        "score": np.zeros((N, K), np.float32),
        "gen_latency_s": np.zeros((N, K)),
        "verify_latency_s": np.full((N, K, K), np.nan),
        "batch_size": bsize.astype(np.int16),
    }
    ys = []
    for k in range(K):  # y_k: stage k alone (greedy: the same tokens as on any route, docs/cascade.md)
        rec = run(PolicyConfig(name="single", stage=k))
        ys.append([np.asarray(t, np.int64) for t in rec["tokens"]])
        out[f"tokens_{k}"] = [np.asarray(t, np.int32) for t in rec["tokens"]]
        out["draft_len"][:, k] = [len(t) for t in rec["tokens"]]
        out["gen_latency_s"][:, k] = rec["latency_s"][:, k] / bsize
        out["score"][:, k] = score_fn(k, [str(t) for t in rec["text"]])
    mismatch = int((out["draft_len"] != route["draft_len"]).sum())
    params = GenerationParams(max_new_tokens=max_new_tokens, eos_token_ids=tuple(eos_token_ids))
    for m in range(1, K):
        for j in range(m):
            for s in range(0, N, batch_size):
                sl = slice(s, s + batch_size)
                sc = engines[m].score(prompts[sl], ys[j][sl], params)
                v = accept_drafts(ys[j][sl], target_argmax=sc.argmax)
                out["accepted_len"][sl, j, m] = v.accepted
                out["accept_frac"][sl, j, m] = v.fraction
                out["verify_latency_s"][sl, j, m] = sc.seconds / len(ys[j][sl])
    for k in range(K):
        out["agree_final"][:, k] = [np.array_equal(a, b) for a, b in zip(ys[k], ys[K - 1])]
    from asd.core.features import FEATURE_NAMES

    attrs = {
        "feature_names": list(FEATURE_NAMES),
        "feature_schema_version": 1,
        "stage_names": list(stage_names),
        "K": K,
        "max_new_tokens": max_new_tokens,
        "stage_params": [float(getattr(e, "num_parameters", lambda: 1.0)()) for e in engines],
        "route_length_mismatches": mismatch,
        "source": "asd.evaluation.fulltrace.build",
    }
    return out, attrs
