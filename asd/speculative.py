"""Token-level speculative decoding between two engines (docs/algorithm.md#regeneration; two-model baseline).

A *target* session holds rows whose cache covers prompt + response-so-far and
one *pending* token per row that the target has already chosen but not fed.
Each round, for every active row:

1. emit the pending token;
2. the drafter feeds what it has not seen yet (prompt + response, then the
   pending token) and proposes up to γ tokens ``d`` (with its distributions q);
3. the target teacher-forces ``[pending] + d`` in one pass (γ + 1 positions)
   and accepts a prefix of ``d`` (greedy or speculative sampling, asd.core.verify);
4. both caches are truncated to prompt + response; the target's token at the
   first mismatch (or the bonus token) becomes the new pending token.

The emitted sequence equals the target's own greedy output (greedy) or is
distributed as the target's own samples (sampling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asd.core.verify import SpeculativeSampler, greedy_accept
from asd.models.base import GenerationParams


@dataclass
class SpecOutput:
    tokens: list[np.ndarray]  # R × [n_i] int64 full response (prefix included)
    probs: list[np.ndarray] | None  # R × [n_i, V] float32 target's processed distribution per token (sampling)
    stats: list[np.ndarray]  # R × [n_i, 5] float32 target-side statistics of each new token
    drafted: np.ndarray  # [R] int64 tokens the drafter proposed
    accepted: np.ndarray  # [R] int64 of which the target accepted
    seconds: float


def speculative_decode(
    target,
    drafter_engine,
    prompts: Sequence[Sequence[int]],
    prefix: Sequence[Sequence[int]],
    pending: np.ndarray,
    pending_stats: np.ndarray,
    pending_probs: np.ndarray | None,
    prefix_probs: Sequence[np.ndarray] | None,
    prefix_stats: Sequence[np.ndarray],
    params: GenerationParams,
    gamma: int,
    rngs: Sequence[np.random.Generator],
    sampler: SpeculativeSampler | None = None,
    drafter_seeds: Sequence[int] | None = None,
) -> SpecOutput:
    """Continue each row after ``prefix[i]`` with the target's pending token ``pending[i]``.

    target: a session whose row i holds ``prompts[i] + prefix[i]`` (nothing more);
    pending [R] int64, pending_stats [R, 5], pending_probs [R, V] (sampling);
    prefix_probs R × [len(prefix_i), V] (sampling) and prefix_stats R × [len(prefix_i), 5];
    rngs: one generator per row for the acceptance coins.
    """
    t0 = time.perf_counter()
    assert gamma >= 1
    R = len(prompts)
    sampling = not params.greedy
    eos = set(params.eos_token_ids)
    dparams = GenerationParams(
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=params.top_p,
        eos_token_ids=params.eos_token_ids,
        keep_probs=sampling,
    )
    sampler = sampler or SpeculativeSampler()

    drafter = drafter_engine.new_session(R, seeds=drafter_seeds)
    resp = [list(map(int, p)) for p in prefix]
    probs: list[list[Any]] = [list(pp) for pp in prefix_probs] if prefix_probs is not None else [[] for _ in range(R)]
    stats = [list(s) for s in prefix_stats]
    plen = np.array([len(p) for p in prompts], dtype=np.int64)
    pend = np.asarray(pending, dtype=np.int64).copy()
    pend_st = np.asarray(pending_stats, dtype=np.float32).copy()
    pend_pr = np.asarray(pending_probs).copy() if sampling else np.zeros((R, 0), np.float32)
    drafted = np.zeros(R, np.int64)
    accepted = np.zeros(R, np.int64)
    active = np.ones(R, dtype=bool)
    while active.any():
        # 1. emit the pending token
        for i in np.flatnonzero(active).tolist():
            resp[i].append(int(pend[i]))
            stats[i].append(pend_st[i])
            if sampling:
                probs[i].append(pend_pr[i])
            if pend[i] in eos or len(resp[i]) >= params.max_new_tokens:
                active[i] = False
        if not active.any():
            break
        # 2. draft up to γ tokens; the drafter first feeds every token it has not seen
        g = np.where(active, np.minimum(gamma, params.max_new_tokens - np.array([len(r) for r in resp])), 0)
        feed = [list(map(int, prompts[i])) + resp[i] if active[i] else [] for i in range(R)]
        feed = [f[int(drafter.length[i]) :] for i, f in enumerate(feed)]
        d = drafter.extend(feed, g, dparams)
        # 3. the target scores [pending] + d in one pass
        tfeed = [[resp[i][-1], *d.tokens[i].tolist()] if active[i] else [] for i in range(R)]
        sc = target.append(tfeed, params, with_probs=sampling)
        keep = target.length.copy()
        for i in np.flatnonzero(active).tolist():
            di = d.tokens[i]
            n = len(di)
            if sampling:
                assert d.probs is not None and sc.probs is not None
                a, nxt = sampler.accept(di, d.probs[i], sc.probs[i], rngs[i])
            else:
                a, nxt = greedy_accept(di, sc.argmax[i])
            drafted[i] += n
            accepted[i] += a
            for t in range(a):
                resp[i].append(int(di[t]))
                stats[i].append(sc.stats[i][t])
                if sampling:
                    assert sc.probs is not None
                    probs[i].append(sc.probs[i][t])
            keep[i] = plen[i] + len(resp[i])
            done = (a > 0 and int(di[a - 1]) in eos) or len(resp[i]) >= params.max_new_tokens
            if done or nxt < 0:
                active[i] = False
                continue
            pend[i] = nxt
            pend_st[i] = sc.stats[i][a]
            if sampling:
                assert sc.probs is not None
                pend_pr[i] = sc.probs[i][a]
        # 4. forget the rejected suffixes
        target.truncate(np.minimum(keep, target.length))
        drafter.truncate(np.minimum(keep, drafter.length))
    drafter.close()
    V = target.engine.vocab_size
    return SpecOutput(
        tokens=[np.asarray(r, np.int64) for r in resp],
        probs=[np.asarray(p, np.float32).reshape(-1, V) for p in probs] if sampling else None,
        stats=[np.asarray(s, np.float32).reshape(-1, 5) for s in stats],
        drafted=drafted,
        accepted=accepted,
        seconds=time.perf_counter() - t0,
    )
