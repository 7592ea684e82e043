"""Features of one stage's run for the quality predictor (DESIGN §1.2).

``stage_features`` turns what stage k saw and produced into a fixed-width
float32 vector; ``FEATURE_NAMES`` names its columns (stored with the traces).
The pooled last-layer hidden state has the model's own width H, which differs
per stage; a fixed random Gaussian projection (seeded by H, scaled by 1/√H)
maps it to ``HIDDEN_WIDTH`` columns so that every stage yields the same F.
numpy only, cheap: it runs once per sample per stage.
"""
from __future__ import annotations

from functools import lru_cache

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
