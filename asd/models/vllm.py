"""``VLLMEngine``: the cluster backend (docs/engines.md), written against vLLM's documented offline API.

UNEXERCISED HERE: vLLM is not installed on the machines this project is
developed and tested on; tests/models/test_vllm_engine.py runs only where
``import vllm`` works. Written against: ``vllm.LLM(model, tensor_parallel_size,
dtype, max_model_len, enable_prefix_caching, seed)``, ``LLM.generate(prompts,
SamplingParams)`` with ``vllm.inputs.TokensPrompt(prompt_token_ids=...)``, and
``SamplingParams(temperature, top_p, top_k, max_tokens, stop_token_ids,
logprobs, prompt_logprobs, seed)``; ``RequestOutput.prompt_logprobs`` (one
``{token_id: Logprob}`` dict per prompt position, ``None`` at position 0) and
``CompletionOutput.token_ids`` / ``.logprobs``.

How the protocol maps onto it:

- ``generate``: one request per prompt; per-token statistics come from the
  top-``TOPK`` logprobs of each step (entropy and margin are computed over those
  plus one bucket for the remaining mass: an approximation, exact when the
  distribution is concentrated on the top-k);
- ``score`` (verification): the request's prompt is prompt + continuation,
  ``prompt_logprobs=TOPK`` gives the logprob of every given token and the rank-1
  token (the argmax) at every position; ``max_tokens=1`` greedy yields the token
  after the whole continuation (the bonus position);
- continuing after an accepted prefix: a new request whose prompt is prompt +
  accepted prefix + the verifier's token; ``enable_prefix_caching=True`` makes
  vLLM reuse the KV blocks of the verify pass (full blocks only: the last
  partial block is recomputed).

Not available through this API (the cascade refuses these with a clear error on
this backend): full next-token distributions (speculative *sampling* needs the
draft's q over the whole vocabulary), pooled hidden states, and the
teacher-forced ``append`` that token-level speculative regeneration (γ > 0)
uses; vLLM's own speculative decoding can play that role instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from asd.models.base import GenerationParams, GenerationResult, ScoreResult, check_prompts

TOPK = 20  # logprobs requested per position; statistics are computed over these


def _stats_from_topk(top: dict, chosen: int) -> np.ndarray:
    """[5] float32 (entropy, max prob, margin, logprob of chosen, argmax) from a {token: Logprob} dict."""
    items = sorted(((int(t), float(lp.logprob)) for t, lp in top.items()), key=lambda x: -x[1])
    p = np.exp(np.array([lp for _, lp in items], dtype=np.float64))
    rest = max(0.0, 1.0 - p.sum())
    ent = float(-(p * np.log(np.maximum(p, 1e-300))).sum() - (rest * math.log(rest) if rest > 0 else 0.0))
    margin = float(p[0] - p[1]) if len(p) > 1 else float(p[0])
    lp_chosen = next((lp for t, lp in items if t == chosen), -math.inf)
    return np.array([ent, p[0], margin, lp_chosen, items[0][0]], dtype=np.float32)


class VLLMEngine:
    """One stage on vLLM (tensor parallel per the stage config)."""

    supports_append = False  # no teacher-forced append, no full distributions (see the module docstring)

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "bfloat16",
        tensor_parallel_size: int = 1,
        max_model_len: int = 4096,
        name: str | None = None,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
    ):
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise ValueError(
                "backend 'vllm' needs the vllm package (pip install 'asd[vllm]'); use backend 'hf' otherwise"
            ) from e
        from asd.models.hf import resolve_model_path

        self.llm = LLM(
            model=resolve_model_path(model),
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self.name = name or model
        cfg = self.llm.llm_engine.model_config.hf_config
        self.vocab_size = int(cfg.vocab_size)
        self.max_context = int(max_model_len)

    @classmethod
    def from_stage(cls, stage, device: str = "auto", dtype: str | None = None) -> VLLMEngine:
        return cls(
            stage.model,
            dtype=dtype or stage.dtype,
            tensor_parallel_size=stage.tensor_parallel_size,
            max_model_len=stage.max_model_len,
            name=stage.name,
        )

    def _sampling(self, params: GenerationParams, max_tokens: int, seed: int | None = None, **kw):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            max_tokens=max_tokens,
            stop_token_ids=list(params.eos_token_ids),
            seed=seed,
            detokenize=False,
            **kw,
        )

    def _check(self, params: GenerationParams, with_probs: bool = False) -> None:
        if params.keep_probs or with_probs:
            raise ValueError(
                "backend 'vllm' returns top-k logprobs, not full distributions: speculative "
                "sampling (temperature > 0 in the cascade) needs backend 'hf'"
            )

    def _run(self, prompts: Sequence[Sequence[int]], sps):
        from vllm.inputs import TokensPrompt

        reqs = [TokensPrompt(prompt_token_ids=list(map(int, p))) for p in prompts]
        return self.llm.generate(reqs, sps, use_tqdm=False)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: GenerationParams, seeds: Sequence[int] | None = None
    ) -> GenerationResult:
        t0 = time.perf_counter()
        self._check(params)
        check_prompts(prompts, self.max_context, self.vocab_size, params.max_new_tokens)
        row_seeds: list[int | None] = list(seeds) if seeds is not None else [None] * len(prompts)
        sps = [self._sampling(params, params.max_new_tokens, s, logprobs=TOPK) for s in row_seeds]
        outs = self._run(prompts, sps)
        tokens, stats, finished = [], [], []
        eos = set(params.eos_token_ids)
        for o in outs:
            c = o.outputs[0]
            ids = np.asarray(c.token_ids, dtype=np.int64)
            tokens.append(ids)
            stats.append(
                np.stack([_stats_from_topk(top, int(t)) for top, t in zip(c.logprobs, ids)])
                if len(ids)
                else np.zeros((0, 5), np.float32)
            )
            finished.append(bool(len(ids) and int(ids[-1]) in eos))
        return GenerationResult(
            tokens=tokens, stats=stats, finished=np.array(finished), seconds=time.perf_counter() - t0
        )

    def score(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        params: GenerationParams | None = None,
        *,
        with_probs: bool = False,
        keep_session: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> ScoreResult:
        t0 = time.perf_counter()
        params = params or GenerationParams()
        self._check(params, with_probs)
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        full = [list(map(int, p)) + list(map(int, c)) for p, c in zip(prompts, continuations)]
        check_prompts(full, self.max_context - 1, self.vocab_size, what="prompt+continuation")
        greedy = GenerationParams(max_new_tokens=1, eos_token_ids=params.eos_token_ids)
        outs = self._run(full, self._sampling(greedy, 1, prompt_logprobs=TOPK, logprobs=TOPK))
        logprobs: list[np.ndarray] = []
        argmax: list[np.ndarray] = []
        stats: list[np.ndarray] = []
        nll: list[float] = []
        for p, c, o in zip(prompts, continuations, outs):
            pl = o.prompt_logprobs  # [len(full)] dicts, first None
            n, s = len(c), len(p)
            rows = [_stats_from_topk(pl[s + t], int(c[t])) for t in range(n)]
            st = np.stack(rows) if rows else np.zeros((0, 5), np.float32)
            bonus = int(o.outputs[0].token_ids[0])
            logprobs.append(st[:, 3].copy())
            argmax.append(np.concatenate([st[:, 4].astype(np.int64), [bonus]]))
            stats.append(st)
            lps = [float(pl[t][int(p[t])].logprob) for t in range(1, s)]
            nll.append(-float(np.mean(lps)) if lps else 0.0)
        sess = VLLMSession(self, prompts, continuations) if keep_session else None
        return ScoreResult(
            logprobs=logprobs,
            argmax=argmax,
            stats=stats,
            prompt_nll=np.array(nll),
            session=sess,
            seconds=time.perf_counter() - t0,
        )


class VLLMSession:
    """Rows of token ids whose KV blocks vLLM's prefix cache holds; continuing = a new request on the prefix."""

    def __init__(self, engine: VLLMEngine, prompts, continuations):
        self.engine = engine
        self.rows = [list(map(int, p)) + list(map(int, c)) for p, c in zip(prompts, continuations)]
        self.length = np.array([len(r) for r in self.rows], dtype=np.int64)

    def truncate(self, keep: Sequence[int]) -> None:
        self.rows = [r[: int(k)] for r, k in zip(self.rows, keep)]
        self.length = np.array([len(r) for r in self.rows], dtype=np.int64)

    def append(self, tokens, params, with_probs=False):
        raise ValueError(
            "backend 'vllm' has no teacher-forced append: regeneration with gamma > 0 needs backend "
            "'hf' (or vLLM's own speculative decoding)"
        )

    def extend(self, tokens, budget, params):
        return self.append(tokens, params)

    def decode(
        self, first, first_stats, budget, params: GenerationParams, first_probs=None, release: bool = False
    ) -> GenerationResult:
        t0 = time.perf_counter()
        B = len(first)
        eos = set(params.eos_token_ids)
        tokens = [np.zeros(0, np.int64) for _ in range(B)]
        stats = [np.zeros((0, 5), np.float32) for _ in range(B)]
        go = [i for i in range(B) if budget[i] > 0]
        for i in go:
            tokens[i] = np.array([int(first[i])], np.int64)
            stats[i] = first_stats[i : i + 1] if first_stats is not None else np.full((1, 5), np.nan, np.float32)
        more = [i for i in go if int(first[i]) not in eos and budget[i] > 1]
        if more:
            sps = [self.engine._sampling(params, int(budget[i]) - 1, logprobs=TOPK) for i in more]
            outs = self.engine._run([self.rows[i] + [int(first[i])] for i in more], sps)
            for i, o in zip(more, outs):
                c = o.outputs[0]
                ids = np.asarray(c.token_ids, dtype=np.int64)
                tokens[i] = np.concatenate([tokens[i], ids])
                if len(ids):
                    stats[i] = np.concatenate(
                        [stats[i], np.stack([_stats_from_topk(top, int(t)) for top, t in zip(c.logprobs, ids)])]
                    )
        fin = np.array([bool(len(t) and int(t[-1]) in eos) for t in tokens])
        return GenerationResult(tokens=tokens, stats=stats, finished=fin, seconds=time.perf_counter() - t0)

    def close(self) -> None:
        self.rows = []
