"""Features of one stage's run for the quality predictor (DESIGN §1.2).

``stage_features`` turns what stage k saw and produced into a fixed-width
float32 vector; ``FEATURE_NAMES`` names its columns (stored with the traces).
The pooled last-layer hidden state has the model's own width H, which differs
per stage; a fixed random Gaussian projection (seeded by H, scaled by 1/√H)
maps it to ``HIDDEN_WIDTH`` columns so that every stage yields the same F.
numpy only, cheap: it runs once per sample per stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

HIDDEN_WIDTH = 16
ENTROPY, MAXPROB, MARGIN, LOGPROB = 0, 1, 2, 3   # asd.tokstats column order (the agreed contract)
LOW_CONFIDENCE = 0.5   # a token whose top-1 probability is below this counts as low-confidence

_SCALAR = ["stage", "prompt_len", "prompt_nll", "draft_len", "ended_eos"]
_STAT = [f"{s}_{a}" for s in ("entropy", "maxprob", "margin") for a in ("mean", "min", "max", "last")]
_TAIL = ["low_conf_frac", "mean_logprob", "accept_ratio_prev", "digit_frac", "num_lines", "nesting_depth"]
FEATURE_NAMES: list[str] = _SCALAR + _STAT + _TAIL + [f"hidden_{i}" for i in range(HIDDEN_WIDTH)]
NUM_FEATURES = len(FEATURE_NAMES)


@lru_cache(maxsize=16)
def _projection(h: int, width: int = HIDDEN_WIDTH) -> np.ndarray:
    """[h, width] float32 fixed Gaussian projection (seeded by h: the same for every run)."""
    return (np.random.default_rng(1000 + h).standard_normal((h, width)) / np.sqrt(h)).astype(np.float32)


def text_features(text: str) -> tuple[float, float, float]:
    """(fraction of digit characters, number of lines, maximum bracket nesting depth) of a response."""
    if not text:
        return 0.0, 0.0, 0.0
    digits = sum(c.isdigit() for c in text) / len(text)
    depth = best = 0
    for c in text:
        if c in "([{":
            depth += 1
            best = max(best, depth)
        elif c in ")]}":
            depth = max(0, depth - 1)
    return float(digits), float(text.count("\n") + 1), float(best)


def stage_features(stage: int, prompt_len: int, prompt_nll: float, stats: np.ndarray,
                   ended_eos: bool, accept_ratio_prev: float, text: str = "",
                   hidden: np.ndarray | None = None) -> np.ndarray:
    """[F] float32 features of stage ``stage``'s response.

    stats: [n, 5] float32 token statistics of the response under M_stage (asd.tokstats columns);
    accept_ratio_prev: fraction of the previous draft this stage accepted (NaN at the first stage → 1.0);
    hidden: [H] pooled last-layer hidden state, or None (zeros).
    """
    st = np.asarray(stats, dtype=np.float32).reshape(-1, 5)
    n = st.shape[0]
    out = np.zeros(NUM_FEATURES, dtype=np.float32)
    out[0:5] = (stage, prompt_len, prompt_nll, n, float(ended_eos))
    j = 5
    for col in (ENTROPY, MAXPROB, MARGIN):
        v = st[:, col]
        out[j:j + 4] = (v.mean(), v.min(), v.max(), v[-1]) if n else (0.0, 0.0, 0.0, 0.0)
        j += 4
    out[j] = float((st[:, MAXPROB] < LOW_CONFIDENCE).mean()) if n else 0.0
    out[j + 1] = float(st[:, LOGPROB].mean()) if n else 0.0
    out[j + 2] = 1.0 if not np.isfinite(accept_ratio_prev) else accept_ratio_prev
    out[j + 3:j + 6] = text_features(text)
    j += 6
    if hidden is not None:
        h = np.asarray(hidden, dtype=np.float32)
        out[j:j + HIDDEN_WIDTH] = h @ _projection(h.shape[0])
    return out


@dataclass(frozen=True)
class TokenTable:
    """Per-token-id text facts, so that text features need no detokenisation: [V] arrays."""

    chars: np.ndarray     # [V] float64 characters the token decodes to
    digits: np.ndarray    # [V] float64 digit characters
    newlines: np.ndarray  # [V] float64 newline characters
    depth: np.ndarray     # [V] float64 net bracket nesting change ((, [, { minus ), ], })

    @classmethod
    def from_tokenizer(cls, tok, vocab_size: int) -> "TokenTable":
        a = np.zeros((4, vocab_size))
        for i in range(vocab_size):
            t = tok.decode([i]) if tok is not None else ""
            a[:, i] = (len(t), sum(c.isdigit() for c in t), t.count("\n"),
                       sum(t.count(c) for c in "([{") - sum(t.count(c) for c in ")]}"))
        return cls(*a)

    @classmethod
    def empty(cls, vocab_size: int) -> "TokenTable":
        z = np.zeros(vocab_size)
        return cls(z, z, z, z)


def batch_features(stage: int,
                   prompt_len: np.ndarray,            # [R] tokens
                   prompt_nll: np.ndarray,            # [R] nats/token
                   stats: Sequence[np.ndarray],       # R × [n_i, 5] token statistics of each response
                   tokens: Sequence[np.ndarray],      # R × [n_i] response token ids
                   ended_eos: np.ndarray,             # [R] bool
                   accept_prev: np.ndarray,           # [R] fraction of the previous draft accepted (NaN: none)
                   hidden: np.ndarray | None,         # [R, H] pooled hidden state or None
                   table: TokenTable) -> np.ndarray:  # [R, F] float32
    """``stage_features`` for R samples at once, vectorised over the concatenated responses.

    Text features come from ``table`` (per token id), the nesting depth is the maximum prefix sum of
    bracket changes (not clamped at 0, unlike ``text_features``).
    """
    R = len(tokens)
    n = np.array([len(t) for t in tokens], dtype=np.int64)
    out = np.zeros((R, NUM_FEATURES), dtype=np.float32)
    out[:, 0] = stage
    out[:, 1] = prompt_len
    out[:, 2] = prompt_nll
    out[:, 3] = n
    out[:, 4] = ended_eos
    has = n > 0
    if has.any():
        st = np.concatenate([np.asarray(s, np.float32).reshape(-1, 5) for s in stats])    # [Σn, 5]
        tk = np.concatenate([np.asarray(t, np.int64) for t in tokens])
        starts = (np.cumsum(n) - n)[has]
        ends = np.cumsum(n)[has] - 1
        cnt = n[has][:, None]
        cols = [ENTROPY, MAXPROB, MARGIN]
        per_tok = np.empty((len(tk), 8), dtype=np.float64)             # summed per response in one reduceat
        per_tok[:, :3] = st[:, cols]
        per_tok[:, 3] = st[:, MAXPROB] < LOW_CONFIDENCE
        per_tok[:, 4] = st[:, LOGPROB]
        per_tok[:, 5] = table.chars[tk]
        per_tok[:, 6] = table.digits[tk]
        per_tok[:, 7] = table.newlines[tk]
        sums = np.add.reduceat(per_tok, starts, axis=0) / cnt          # [R', 8] means
        mins = np.minimum.reduceat(st[:, cols], starts, axis=0)
        maxs = np.maximum.reduceat(st[:, cols], starts, axis=0)
        lasts = st[ends][:, cols]
        blk = np.stack([sums[:, :3], mins, maxs, lasts], axis=2)        # [R', 3 stats, 4 aggregates]
        out[has, 5:17] = blk.reshape(-1, 12)
        j = 17
        out[has, j] = sums[:, 3]
        out[has, j + 1] = sums[:, 4]
        chars = sums[:, 5] * cnt[:, 0]
        out[has, j + 3] = sums[:, 6] / np.maximum(sums[:, 5], 1e-12) * (chars > 0)
        out[has, j + 4] = sums[:, 7] * cnt[:, 0] + (chars > 0)
        cs = np.cumsum(table.depth[tk])
        base = np.concatenate([[0.0], cs])[starts]
        out[has, j + 5] = np.maximum(np.maximum.reduceat(cs, starts) - base, 0)
    j = 5 + 12
    ap = np.asarray(accept_prev, dtype=np.float64)
    out[:, j + 2] = np.where(np.isfinite(ap), ap, 1.0)
    if hidden is not None:
        h = np.asarray(hidden, dtype=np.float32)
        out[:, j + 6:j + 6 + HIDDEN_WIDTH] = h @ _projection(h.shape[1])
    return out
