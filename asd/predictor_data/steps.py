"""Jobs-layer steps of the training-set generator: ``step(sample_ids [B] int64, config) -> records``.

``testbed``: sample id i is one testbed prompt of the **predictor** split (asd.testbed.predictor_split: cell and
position from the id, the prompt from the run seed), so any sharding, rerun or resume gives the same rows.
``benchmarks``: sample id i is one question of the benchmarks' non-test splits (asd.predictor_data.sources).
Both run :func:`asd.predictor_data.trace.full_trace` on the batch, score every stage's response with the task's
metric and return the records of ``asd.predictor_data.schema`` (checked: no empty batch, no NaN feature).
Engines, tokenizer and token table are built once per process.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np

from asd.predictor_data.schema import SCHEMA, check_records, prompt_key

_CACHE: dict[str, Any] = {}  # engines key → (engines, tokenizer, token table)


def build_engines(config: dict[str, Any]) -> tuple[list, Any, Any]:
    """(engines, tokenizer, TokenTable) of the config's hierarchy with predictor_data's device/dtype/fast."""
    from asd.config_loader import to_dict
    from asd.core.features import TokenTable
    from asd.models.loading import check_hierarchy, load_engines, load_tokenizer

    hier, gen = config["hierarchy"], config["predictor_data"]
    key = json.dumps([to_dict(hier), gen.device, gen.dtype, gen.fast], sort_keys=True)
    if key not in _CACHE:
        if hier.backend == "hf":
            from asd.models.hf import HFEngine

            check_hierarchy(hier)
            engines = [
                HFEngine(
                    st.model,
                    dtype=gen.dtype or st.dtype,
                    device=gen.device or hier.device,
                    name=st.name,
                    max_context=st.max_model_len,
                    fast=gen.fast,
                )
                for st in hier.stages
            ]
        else:
            engines = load_engines(hier, device=gen.device, dtype=gen.dtype)
        tok = load_tokenizer(hier)
        _CACHE.clear()  # one hierarchy per process: free the previous one's memory
        _CACHE[key] = (engines, tok, TokenTable.from_tokenizer(tok, engines[0].vocab_size))
    return _CACHE[key]


def _sections(config: dict[str, Any], source: str):
    for name in ("hierarchy", "predictor_data", "jobs"):
        if name not in config:
            raise ValueError(f"the predictor-data step needs a {name!r} section (see configs/predictor_data.yaml)")
    gen = config["predictor_data"]
    if gen.source != source:
        raise ValueError(f"predictor_data.source is {gen.source!r} but the step reads {source!r} prompts")
    return gen, config["jobs"]


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run the models on ``n`` torch threads (the run's ``jobs.cpus_per_task``), whatever the process had set:
    CPU float reductions depend on the thread count, so an in-process run, a local array and a SLURM array of
    one config write the same features only at the same count. The previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _records(
    config: dict, ids: np.ndarray, prompts: list[list[int]], eos: tuple[int, ...], score_fn, meta: dict
) -> dict[str, Any]:
    """full_trace + per-stage scores → the schema's records for one batch."""
    from asd.predictor_data.trace import full_trace

    gen, job = config["predictor_data"], config["jobs"]
    engines, tok, table = build_engines(config)
    with _torch_threads(job.cpus_per_task):
        tr = full_trace(engines, prompts, ids, gen.max_new_tokens, eos, table, seed=job.seed)
    K, B = len(engines), len(ids)
    texts = [[tok.decode(t.tolist(), skip_special_tokens=True) for t in tr["tokens"][k]] for k in range(K)]
    score = np.asarray(score_fn(texts), dtype=np.float32).reshape(K, B).T
    rec: dict[str, Any] = {
        "sample_id": ids,
        **meta,
        "prompt_len": tr["prompt_len"],
        "features": tr["features"],
        "draft_len": tr["draft_len"],
        "accepted_len": tr["accepted_len"],
        "accept_frac": tr["accept_frac"],
        "agree_final": tr["agree_final"],
        "score": score,
        "gen_latency_s": tr["gen_latency_s"],
        "verify_latency_s": tr["verify_latency_s"],
        "batch_size": np.full(B, B, np.int16),
    }
    for k in range(K):
        rec[f"tokens_{k}"] = tr["tokens"][k]
    check_records(rec, f"samples {int(ids[0])}..{int(ids[-1])}")
    return rec


def testbed(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Full traces of the testbed predictor-split prompts of ``sample_ids`` [B] (docs/predictor_data.md)."""
    from asd.core.features import FEATURE_NAMES
    from asd.testbed import scoring
    from asd.testbed import tokenizer as tk
    from asd.testbed.predictor_split import prompt_for_sample

    gen, job = _sections(config, "testbed")
    ids = np.asarray(sample_ids, dtype=np.int64)
    if ids.size == 0:
        raise ValueError("no sample ids given (an empty batch)")
    picked = [prompt_for_sample(int(i), job.seed, tuple(gen.tasks), tuple(gen.levels), gen.repeats) for i in ids]
    examples = [e for e, _ in picked]
    meta = {
        "task": [e.task for e in examples],
        "level": np.array([e.level for e in examples], np.int8),
        "prompt_key": np.array([prompt_key(e.prompt) for e in examples], np.int64),
        "repeat": np.array([r for _, r in picked], np.int16),
    }
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in examples]

    def score_fn(texts: list[list[str]]) -> list[bool]:  # one child process for all stages' HumanEval programs
        return scoring.score(examples * len(texts), [t for per_stage in texts for t in per_stage])

    rec = _records(config, ids, prompts, (tk.EOS_ID,), score_fn, meta)
    rec["feature_names"] = list(FEATURE_NAMES)
    return rec


testbed.schema = SCHEMA  # type: ignore[attr-defined]


def _eos_ids(tok) -> tuple[int, ...]:
    """The tokenizer's EOS id and the chat end-of-turn / end-of-text tokens it knows (Qwen2.5: both end a turn)."""
    ids = {int(tok.eos_token_id)} if getattr(tok, "eos_token_id", None) is not None else set()
    vocab = tok.get_vocab()
    ids |= {int(vocab[t]) for t in ("<|im_end|>", "<|endoftext|>") if t in vocab}
    if not ids:
        raise ValueError("the hierarchy's tokenizer names no EOS token; generation would never stop")
    return tuple(sorted(ids))


def benchmarks(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Full traces of benchmark questions from the non-test splits (asd.predictor_data.sources) [B]."""
    from asd.core.features import FEATURE_NAMES
    from asd.eval.scoring import score_outputs
    from asd.predictor_data.sources import prompt_text, sample_item

    gen, _ = _sections(config, "benchmarks")
    ids = np.asarray(sample_ids, dtype=np.int64)
    if ids.size == 0:
        raise ValueError("no sample ids given (an empty batch)")
    picked = [sample_item(int(i), gen) for i in ids]
    _, tok, _ = build_engines(config)
    texts = [prompt_text(b, gen, tok) for b, _ in picked]
    prompts = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    meta = {
        "task": [b.task for b, _ in picked],
        "level": np.zeros(len(ids), np.int8),
        "prompt_key": np.array([prompt_key(t) for t in texts], np.int64),
        "repeat": np.array([r for _, r in picked], np.int16),
    }

    def score_fn(outputs: list[list[str]]) -> np.ndarray:  # [K, B] per task's metric (asd.eval.scoring)
        out = np.zeros((len(outputs), len(ids)), np.float32)
        for task in sorted({b.task for b, _ in picked}):
            rows = [r for r, (b, _) in enumerate(picked) if b.task == task]
            for k, per_stage in enumerate(outputs):
                out[k, rows] = score_outputs(task, [picked[r][0].item for r in rows], [per_stage[r] for r in rows])
        return out

    rec = _records(config, ids, prompts, _eos_ids(tok), score_fn, meta)
    rec["feature_names"] = list(FEATURE_NAMES)
    return rec


benchmarks.schema = SCHEMA  # type: ignore[attr-defined]
