"""The ``Engine`` protocol every backend implements, and the plain data it exchanges.

Terms
-----
prompt
    token ids fed to the model before any response (``list[int]``, non-empty).
response / continuation
    token ids after the prompt. ``generate`` produces one; ``score`` is given one.
stats
    per-token statistics of the distribution a token was chosen from, the five
    columns of :mod:`asd.tokstats` (entropy nats, max prob, top1−top2 margin,
    logprob of the chosen token, argmax), ``[n, 5] float32``.
probs
    the *processed* next-token distribution a token was drawn from (after
    temperature / top-k / top-p), ``[n, V] float32``; kept only in sampling mode
    (speculative sampling needs the draft's full ``q``).
session
    decoding state that survives a call: the KV cache of one batch of rows plus
    what is valid in it. ``score(..., keep_session=True)`` returns one, and
    ``Session.truncate`` + ``Session.decode`` continue generation after an
    accepted prefix without recomputing it (docs/algorithm.md#verification).

Everything crossing this boundary is numpy or plain Python: the cascade and the
pure core never see a torch tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

NO_SEED = -1


@dataclass(frozen=True)
class GenerationParams:
    """How to generate. ``temperature == 0`` is greedy (argmax; ties → lowest id, as ``torch.argmax``)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    eos_token_ids: tuple[int, ...] = ()  # generation of a row stops after emitting one of these
    keep_probs: bool = False  # return the processed distribution of every emitted token (sampling mode)
    hidden: bool = False  # return the pooled last-layer hidden state
    prompt_nll: bool = False  # return the mean NLL of the prompt tokens (nats/token)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class GenerationResult:
    """Output of ``generate`` / ``Session.decode`` for B rows (ragged lists, one entry per row)."""

    tokens: list[np.ndarray]  # B × [n_i] int64 generated ids (EOS included when emitted)
    stats: list[np.ndarray]  # B × [n_i, 5] float32 token statistics (asd.tokstats columns)
    probs: list[np.ndarray] | None = None  # B × [n_i, V] float32 processed distributions (keep_probs)
    hidden: np.ndarray | None = None  # [B, H] float32 mean last-layer hidden state over prompt+response
    prompt_nll: np.ndarray | None = None  # [B] float64 mean NLL of prompt tokens 1.. (nats/token)
    finished: np.ndarray | None = None  # [B] bool: row stopped at EOS (False: hit max_new_tokens)
    seconds: float = 0.0  # wall-clock of the call


@dataclass
class ScoreResult:
    """Output of ``score``: the model teacher-forced over prompt + continuation.

    For a continuation ``c`` of length n, position t (0 ≤ t ≤ n) describes the
    distribution *before* ``c[t]`` (position n: after the last given token, the
    "bonus" distribution).
    """

    logprobs: list[np.ndarray]  # B × [n_i] float32 log p(c[t] | prompt, c[:t])
    argmax: list[np.ndarray]  # B × [n_i + 1] int64 model's greedy token at each position
    stats: list[np.ndarray]  # B × [n_i, 5] float32 token statistics of the given tokens
    probs: list[np.ndarray] | None = None  # B × [n_i + 1, V] float32 processed distributions (with_probs)
    hidden: np.ndarray | None = None  # [B, H] float32 mean last-layer hidden state
    prompt_nll: np.ndarray | None = None  # [B] float64 mean NLL of prompt tokens (nats/token)
    session: Session | None = None  # live KV cache over prompt + continuation (keep_session)
    seconds: float = 0.0


@runtime_checkable
class Session(Protocol):
    """A live batch of rows with a KV cache, for continuing after verification.

    Row i holds ``length[i]`` valid tokens in its cache. ``truncate`` forgets
    everything after ``keep[i]`` tokens; ``decode`` feeds ``first[i]`` (a token
    already chosen, e.g. the verifier's token at the first mismatch) and goes on
    generating until EOS or until the row's response reaches its budget.
    ``append`` teacher-forces extra tokens and ``extend`` feeds tokens then
    generates (the two halves of token-level speculative decoding).
    """

    length: np.ndarray  # [B] int64 valid tokens per row (prompt + response so far)

    def truncate(self, keep: Sequence[int]) -> None: ...

    def append(
        self, tokens: Sequence[Sequence[int]], params: GenerationParams, with_probs: bool = False
    ) -> ScoreResult: ...

    def extend(
        self, tokens: Sequence[Sequence[int]], budget: Sequence[int], params: GenerationParams
    ) -> GenerationResult: ...

    def decode(
        self,
        first: Sequence[int],
        first_stats: np.ndarray | None,
        budget: Sequence[int],
        params: GenerationParams,
        first_probs: np.ndarray | None = None,
        release: bool = False,
    ) -> GenerationResult: ...

    def close(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """One model behind one backend (``hf`` | ``vllm``)."""

    name: str
    vocab_size: int
    max_context: int  # tokens (prompt + response) the model accepts

    def generate(
        self, prompts: Sequence[Sequence[int]], params: GenerationParams, seeds: Sequence[int] | None = None
    ) -> GenerationResult: ...

    def score(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        params: GenerationParams | None = None,
        *,
        with_probs: bool = False,
        keep_session: bool = False,
    ) -> ScoreResult: ...


def check_prompts(
    prompts: Sequence[Sequence[int]], max_context: int, vocab_size: int, max_new_tokens: int = 0, what: str = "prompt"
) -> None:
    """ValueError naming the first bad row: empty, too long for the context, or ids outside the vocabulary."""
    if len(prompts) == 0:
        raise ValueError(f"no {what}s given (empty batch)")
    for i, p in enumerate(prompts):
        n = len(p)
        if n == 0:
            raise ValueError(f"{what} {i} is empty; every {what} needs at least one token")
        if n + max_new_tokens > max_context:
            raise ValueError(
                f"{what} {i} has {n} tokens + max_new_tokens {max_new_tokens} > the model's context "
                f"of {max_context} tokens"
            )
        a = np.asarray(p)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{what} {i} must hold integer token ids, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= vocab_size:
            raise ValueError(f"{what} {i} has token ids outside [0, {vocab_size})")


def row_seeds(run_seed: int, sample_ids: Sequence[int]) -> list[int]:
    """A per-sample seed from (run_seed, sample_id): the same sample draws the same numbers in any batch."""
    return [
        int(np.random.SeedSequence([run_seed & 0xFFFFFFFF, int(s) & 0xFFFFFFFF]).generate_state(1)[0])
        for s in sample_ids
    ]
