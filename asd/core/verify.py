"""Acceptance rules of draft-verify decoding (docs/algorithm.md#verification), pure numpy.

Terms (as in Leviathan et al. 2023, "Fast Inference from Transformers via
Speculative Decoding", and Chen et al. 2023):

- draft ``x[0..n)``: tokens proposed by a smaller stage, each drawn from the
  draft's processed distribution ``q[t]`` (greedy: its argmax);
- target: the verifying stage; ``p[t]`` is its processed distribution before
  ``x[t]`` given the prompt and ``x[:t]``; ``p[n]`` is the distribution after
  the whole draft (the "bonus" position);
- accepted length ``a``: how many draft tokens the target keeps; the target
  then contributes exactly one token of its own (at the first mismatch, or the
  bonus token when all n were accepted). The output is ``x[:a] + [next]``.

Greedy: ``a`` is the longest prefix on which ``x[t] == argmax p[t]``; ``next``
is ``argmax p[a]``. The result equals what the target emits greedily.

Sampling: accept ``x[t]`` with probability ``min(1, p[t, x]/q[t, x])``; on the
first rejection draw ``next`` from ``norm(max(0, p[t] − q[t]))``; when all are
accepted draw ``next`` from ``p[n]``. Then every emitted token is distributed
exactly as the target's own sample (the theorem the χ² test checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def greedy_accept(
    draft: np.ndarray,  # [n] int draft tokens
    target_argmax: np.ndarray,  # [n + 1] int target's argmax before each draft token and after
) -> tuple[int, int]:
    """(accepted length a in 0..n, the target's token at position a).

    Example: draft [5, 7, 9], target argmax [5, 7, 2, 4] → (2, 2): keeps 5, 7 and emits 2.
    """
    n = len(draft)
    assert len(target_argmax) >= n + 1 or len(target_argmax) == n, (len(draft), len(target_argmax))
    mism = np.flatnonzero(np.asarray(draft) != np.asarray(target_argmax[:n]))
    a = int(mism[0]) if mism.size else n
    nxt = int(target_argmax[a]) if a < len(target_argmax) else -1
    return a, nxt


def sample_index(probs: np.ndarray, u: float) -> int:
    """Inverse-CDF draw from ``probs`` [V] (non-negative, need not be normalised) with a uniform ``u`` in [0, 1)."""
    c = np.cumsum(probs, dtype=np.float64)
    total = c[-1]
    assert total > 0, "cannot sample from an all-zero distribution"
    i = int(np.searchsorted(c, u * total, side="right"))
    # never land on a zero-probability entry through rounding at the top end
    i = min(i, len(c) - 1)
    while probs[i] <= 0 and i > 0:
        i -= 1
    return i


class SpeculativeSampler:
    """The standard speculative-sampling acceptance rule; subclass and override to study variants.

    The χ² test of tests/test_cascade_sampling.py overrides ``accept_prob`` or
    ``residual`` with deliberately wrong rules and checks that it detects them.
    """

    def accept_prob(self, p_x: float, q_x: float) -> float:
        """Probability of keeping a draft token with target prob ``p_x`` and draft prob ``q_x``."""
        return 1.0 if q_x <= 0 else min(1.0, p_x / q_x)

    def residual(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Distribution to draw from after a rejection, [V] (unnormalised): max(0, p − q)."""
        r = np.maximum(p.astype(np.float64) - q.astype(np.float64), 0.0)
        if r.sum() <= 0:  # p == q up to rounding: a rejection had probability ~0; p is then the right law
            return p.astype(np.float64)
        return r

    def accept(
        self,
        draft: np.ndarray,  # [n] int draft tokens
        q: np.ndarray,  # [n, V] float draft's processed distribution at each draft token
        p: np.ndarray,  # [n + 1, V] or [n, V] float target's processed distribution
        rng: np.random.Generator,
    ) -> tuple[int, int]:
        """(accepted length a, next token); next = -1 when all n are accepted and p has no bonus row."""
        n = len(draft)
        for t in range(n):
            x = int(draft[t])
            if rng.random() < self.accept_prob(float(p[t, x]), float(q[t, x])):
                continue
            return t, sample_index(self.residual(p[t], q[t]), rng.random())
        if p.shape[0] > n:
            return n, sample_index(p[n], rng.random())
        return n, -1


@dataclass
class Verdict:
    """A verifying stage's verdict on R drafts: accepted [R] int64 tokens (0..n_r), next_token [R] int64 (the
    verifier's token at the first mismatch, or its bonus token; -1: none), draft_len [R] int64 = n_r."""

    accepted: np.ndarray
    next_token: np.ndarray
    draft_len: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        """[R] float64 accepted / max(n, 1): the acceptance ratio the next stage's features see."""
        return self.accepted / np.maximum(self.draft_len, 1)


def accept_drafts(
    drafts: Sequence[np.ndarray],  # R × [n_r] int draft tokens
    target_argmax: Sequence[np.ndarray] | None = None,  # R × [n_r + 1] int verifier's argmax (greedy)
    *,
    target_probs: Sequence[np.ndarray] | None = None,  # R × [n_r + 1, V] verifier's distributions (sampling)
    draft_probs: Sequence[np.ndarray | None] | None = None,  # R × [n_r, V] the drafts' distributions (sampling)
    rngs: Sequence[np.random.Generator] | None = None,  # R generators, one per row (sampling)
    sampler: SpeculativeSampler | None = None,
) -> Verdict:
    """The verifier's verdict on each draft: greedy (longest prefix equal to its argmax) when ``target_argmax``
    is given, else speculative sampling with ``sampler`` (default ``SpeculativeSampler()``) and ``rngs``."""
    R = len(drafts)
    a = np.zeros(R, np.int64)
    nxt = np.zeros(R, np.int64)
    if target_argmax is not None:
        for r in range(R):
            a[r], nxt[r] = greedy_accept(drafts[r], target_argmax[r])
    else:
        assert target_probs is not None and draft_probs is not None and rngs is not None
        sampler = sampler or SpeculativeSampler()
        for r in range(R):
            q = draft_probs[r]
            assert q is not None, "sampling needs the drafts' distributions"
            a[r], nxt[r] = sampler.accept(drafts[r], q, target_probs[r], rngs[r])
    return Verdict(a, nxt, np.array([len(d) for d in drafts], np.int64))


def truncate_at_stop(tokens: np.ndarray, eos: Sequence[int], max_new_tokens: int) -> tuple[np.ndarray, bool]:
    """A response cut the way generation cuts it: after the first EOS, and to ``max_new_tokens``.

    Returns (tokens [m] int64, stopped_at_eos).
    """
    t = np.asarray(tokens, dtype=np.int64)[:max_new_tokens]
    if len(eos):
        hit = np.flatnonzero(np.isin(t, np.asarray(eos, dtype=np.int64)))
        if hit.size:
            return t[: hit[0] + 1], True
    return t, False
