"""Features of one stage's run for the quality predictor (docs/algorithm.md#features).

``stage_features`` turns what stage k saw and produced into a fixed-width
float32 vector; ``FEATURE_NAMES`` names its columns (stored with the traces).
The pooled last-layer hidden state has the model's own width H, which differs
per stage; a fixed random Gaussian projection (seeded by H, scaled by 1/√H)
maps it to ``HIDDEN_WIDTH`` columns so that every stage yields the same F.
numpy only, cheap: it runs once per sample per stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from asd._ext import get_ext

HIDDEN_WIDTH = 16
ENTROPY, MAXPROB, MARGIN, LOGPROB = 0, 1, 2, 3  # asd.tokstats column order (the agreed contract)
LOW_CONFIDENCE = 0.5  # a token whose top-1 probability is below this counts as low-confidence

_SCALAR = ["stage", "prompt_len", "prompt_nll", "draft_len", "ended_eos"]
_STAT = [f"{s}_{a}" for s in ("entropy", "maxprob", "margin") for a in ("mean", "min", "max", "last")]
_TAIL = ["low_conf_frac", "mean_logprob", "accept_ratio_prev", "digit_frac", "num_lines", "nesting_depth"]
FEATURE_NAMES: list[str] = _SCALAR + _STAT + _TAIL + [f"hidden_{i}" for i in range(HIDDEN_WIDTH)]
NUM_FEATURES = len(FEATURE_NAMES)
FEATURE_SCHEMA_VERSION = 1  # bump when FEATURE_NAMES or a column's meaning changes (training data, predictors)


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


def stage_features(
    stage: int,
    prompt_len: int,
    prompt_nll: float,
    stats: np.ndarray,
    ended_eos: bool,
    accept_ratio_prev: float,
    text: str = "",
    hidden: np.ndarray | None = None,
) -> np.ndarray:
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
        out[j : j + 4] = (v.mean(), v.min(), v.max(), v[-1]) if n else (0.0, 0.0, 0.0, 0.0)
        j += 4
    out[j] = float((st[:, MAXPROB] < LOW_CONFIDENCE).mean()) if n else 0.0
    out[j + 1] = float(st[:, LOGPROB].mean()) if n else 0.0
    out[j + 2] = 1.0 if not np.isfinite(accept_ratio_prev) else accept_ratio_prev
    out[j + 3 : j + 6] = text_features(text)
    j += 6
    if hidden is not None:
        h = np.asarray(hidden, dtype=np.float32)
        out[j : j + HIDDEN_WIDTH] = h @ _projection(h.shape[0])
    return out


@dataclass(frozen=True)
class TokenTable:
    """Per-token-id text facts, so that text features need no detokenisation: [V] arrays."""

    chars: np.ndarray  # [V] float64 characters the token decodes to
    digits: np.ndarray  # [V] float64 digit characters
    newlines: np.ndarray  # [V] float64 newline characters
    depth: np.ndarray  # [V] float64 net bracket nesting change ((, [, { minus ), ], })

    @property
    def matrix(self) -> np.ndarray:
        """[V, 4] float64 columns chars, digits, newlines, depth (cached)."""
        m = self.__dict__.get("_matrix")
        if m is None:
            m = np.stack([self.chars, self.digits, self.newlines, self.depth], axis=1)
            object.__setattr__(self, "_matrix", m)
        return m

    @classmethod
    def from_tokenizer(cls, tok, vocab_size: int) -> TokenTable:
        a = np.zeros((4, vocab_size))
        for i in range(vocab_size):
            t = tok.decode([i]) if tok is not None else ""
            a[:, i] = (
                len(t),
                sum(c.isdigit() for c in t),
                t.count("\n"),
                sum(t.count(c) for c in "([{") - sum(t.count(c) for c in ")]}"),
            )
        return cls(*a)

    @classmethod
    def empty(cls, vocab_size: int) -> TokenTable:
        z = np.zeros(vocab_size)
        return cls(z, z, z, z)


def batch_features(
    stage: int,
    prompt_len: np.ndarray,  # [R] tokens
    prompt_nll: np.ndarray,  # [R] nats/token
    stats: Sequence[np.ndarray],  # R × [n_i, 5] token statistics of each response
    tokens: Sequence[np.ndarray],  # R × [n_i] response token ids
    ended_eos: np.ndarray | None,  # [R] bool, or None: from the last tokens (eos_token_ids)
    accept_prev: np.ndarray,  # [R] fraction of the previous draft accepted (NaN: none)
    hidden: np.ndarray | None,  # [R, H] pooled hidden state or None
    table: TokenTable,
    eos_token_ids: Sequence[int] = (),
) -> np.ndarray:  # [R, F] float32
    """``batch_features_ref`` in one compiled call (``asd._C.decision_features``, bit-identical) + the projection.

    The cascade calls this once per decision; at batch 16 the numpy twin is ~20 numpy calls (~90 µs on the
    2-core CI machine), the kernel one pass over the responses. Falls back to the twin without ``asd._C``.
    ``ended_eos`` None: read from each response's last token against ``eos_token_ids`` inside the kernel
    (the cascade's per-sample Python loop for it was ~3 µs at batch 16).
    """
    ext = get_ext()
    kernel = getattr(ext, "decision_features", None)
    if kernel is None:
        return batch_features_ref(
            stage, prompt_len, prompt_nll, stats, tokens, ended_eos, accept_prev, hidden, table, eos_token_ids
        )
    out = np.zeros((len(tokens), NUM_FEATURES), dtype=np.float32)
    kernel(
        out, float(stage), prompt_len, prompt_nll, stats, tokens, ended_eos, accept_prev, table.matrix, eos_token_ids
    )
    if hidden is not None:
        h = hidden if type(hidden) is np.ndarray and hidden.dtype == np.float32 else np.asarray(hidden, np.float32)
        out[:, _HIDDEN0:] = h @ _projection(h.shape[1])
    return out


_HIDDEN0 = len(_SCALAR) + len(_STAT) + len(_TAIL)  # first hidden-projection column (23)
_F32 = np.dtype(np.float32)


def batch_features_ref(
    stage: int,
    prompt_len: np.ndarray,  # [R] tokens
    prompt_nll: np.ndarray,  # [R] nats/token
    stats: Sequence[np.ndarray],  # R × [n_i, 5] token statistics of each response
    tokens: Sequence[np.ndarray],  # R × [n_i] response token ids
    ended_eos: np.ndarray | None,  # [R] bool, or None: from the last tokens
    accept_prev: np.ndarray,  # [R] fraction of the previous draft accepted (NaN: none)
    hidden: np.ndarray | None,  # [R, H] pooled hidden state or None
    table: TokenTable,
    eos_token_ids: Sequence[int] = (),
) -> np.ndarray:  # [R, F] float32
    """The numpy twin of ``batch_features``: ``stage_features`` for R samples at once.

    Vectorised over the concatenated responses.

    Text features come from ``table`` (per token id), the nesting depth is the maximum prefix sum of
    bracket changes (not clamped at 0, unlike ``text_features``). ``ended_eos`` None: a response ended at
    EOS when its last token is one of ``eos_token_ids`` (what the cascade records).
    """
    if ended_eos is None:
        eos = {int(e) for e in eos_token_ids}
        ended_eos = np.array([len(t) > 0 and int(t[-1]) in eos for t in tokens], dtype=bool)
    R = len(tokens)
    n = np.fromiter(map(len, tokens), dtype=np.int64, count=R)
    out = np.zeros((R, NUM_FEATURES), dtype=np.float32)
    out[:, 0] = stage
    out[:, 1] = prompt_len
    out[:, 2] = prompt_nll
    out[:, 3] = n
    out[:, 4] = ended_eos
    if n.all():
        st = np.concatenate(stats)  # [Σn, 5]
        tk = np.concatenate(tokens)
        ends = np.cumsum(n)
        starts = ends - n
        ends -= 1
        cnt = n[:, None]
        tab = table.matrix[tk]  # [Σn, 4] chars, digits, newlines, depth
        # [Σn, 8]: entropy, maxprob, margin, low-confidence, logprob, chars, digits, newlines — one reduceat
        per_tok = np.concatenate([st[:, :3], st[:, 1:2] < LOW_CONFIDENCE, st[:, 3:4], tab[:, :3]], axis=1)
        sums = np.add.reduceat(per_tok, starts, axis=0) / cnt  # [R, 8] means
        mm = np.minimum.reduceat(np.concatenate([st[:, :3], -st[:, :3]], axis=1), starts, axis=0)
        blk = np.stack([sums[:, :3], mm[:, :3], -mm[:, 3:], st[ends, :3]], axis=2)  # [R, 3 stats, 4 aggregates]
        out[:, 5:17] = blk.reshape(R, 12)
        out[:, 17:19] = sums[:, 3:5]
        chars = sums[:, 5] * n
        out[:, 20] = sums[:, 6] / np.maximum(sums[:, 5], 1e-12) * (chars > 0)
        out[:, 21] = sums[:, 7] * n + (chars > 0)
        cs = np.cumsum(tab[:, 3])
        out[:, 22] = np.maximum(np.maximum.reduceat(cs, starts) - (cs[ends] - np.add.reduceat(tab[:, 3], starts)), 0)
    elif n.any():  # some empty responses: compute the others, leave zeros
        has = np.flatnonzero(n)
        out[has] = batch_features_ref(
            stage,
            np.asarray(prompt_len)[has],
            np.asarray(prompt_nll)[has],
            [stats[i] for i in has.tolist()],
            [tokens[i] for i in has.tolist()],
            np.asarray(ended_eos)[has],
            np.asarray(accept_prev)[has],
            None if hidden is None else np.asarray(hidden)[has],
            table,
        )
    j = 5 + 12
    ap = np.asarray(accept_prev, dtype=np.float64)
    out[:, j + 2] = np.where(np.isfinite(ap), ap, 1.0)
    if hidden is not None:
        h = np.asarray(hidden, dtype=np.float32)
        out[:, j + 6 : j + 6 + HIDDEN_WIDTH] = h @ _projection(h.shape[1])
    return out


def record_batch_features(
    features: np.ndarray,  # [N, K, F] float32, written in place at [rows, stage]
    rows: np.ndarray,  # [R] int64 rows of features / entries of the lists
    stage: int,
    prompt_len: np.ndarray,  # [N] tokens (read at rows)
    prompt_nll: np.ndarray,  # [R] nats/token
    stats: list[np.ndarray],  # N × [n_i, 5] (read at rows)
    tokens: list[np.ndarray],  # N × [n_i] response token ids (read at rows)
    accept_prev: np.ndarray | None,  # [R] fraction of the previous draft accepted (NaN: none); None: none for all
    hidden: np.ndarray | None,  # [R, H] pooled hidden state or None
    table: TokenTable,
    eos_token_ids: Sequence[int] = (),
) -> None:
    """``record_batch_features_ref`` in one compiled call (``asd._C.record_features``) + numpy's projection matmul.

    What the cascade records after each stage: the features go straight into its ``[N, K, F]`` record,
    without building the per-row lists, a [R, F] temporary and a fancy-indexed assignment (~5 µs at batch 16).
    The projection is ``np.dot(h, P)``: the same BLAS sgemm as the twin's ``h @ P`` (bit-identical, tested),
    without the ufunc machinery around it (~0.3 µs at batch 16).
    """
    kernel = getattr(get_ext(), "record_features", None)
    if kernel is None:
        return record_batch_features_ref(
            features, rows, stage, prompt_len, prompt_nll, stats, tokens, accept_prev, hidden, table, eos_token_ids
        )
    proj = None
    if hidden is not None:
        h = hidden if type(hidden) is np.ndarray and hidden.dtype == _F32 else np.asarray(hidden, np.float32)
        proj = np.dot(h, _projection(h.shape[1]))
    kernel(features, rows, stage, prompt_len, prompt_nll, stats, tokens, accept_prev, proj, table.matrix, eos_token_ids)


def record_batch_features_ref(
    features, rows, stage, prompt_len, prompt_nll, stats, tokens, accept_prev, hidden, table, eos_token_ids=()
) -> None:
    """The readable twin of ``record_batch_features``: ``batch_features_ref`` of the rows, assigned."""
    rows = np.asarray(rows, np.int64)
    if accept_prev is None:
        accept_prev = np.full(rows.size, np.nan)
    features[rows, stage] = batch_features_ref(
        stage,
        np.asarray(prompt_len)[rows],
        prompt_nll,
        [stats[i] for i in rows],
        [tokens[i] for i in rows],
        None,
        accept_prev,
        hidden,
        table,
        eos_token_ids,
    )
