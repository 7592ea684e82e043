"""The full trace of one batch of prompts: every stage's own response, every later stage's verdict on it.

For B prompts and K stages (engines smallest first, greedy):

1. each stage m generates its own response y_m for the whole batch, computed as ``engines[m].generate``
   computes it (one session: prefill the prompts, then decode; tested token for token equal);
2. each later stage m verifies each earlier y_k (k < m) teacher-forced; the accepted length a_{k,m} is the
   longest prefix of y_k that agrees with M_m's argmax (``asd.core.verify.greedy_accept``). The adjacent
   draft y_{m−1} gets one full pass over prompt + y_{m−1} (``engines[m].score``: the cascade's verification
   call); the others (k < m − 1) are appended to M_m's prefilled prompt cache between its prefill and its
   decoding and rolled back after (the prompt is not recomputed: the biggest stage's work halves);
3. stage k's features are recorded by the cascade's own code (``asd.core.features.record_batch_features``)
   with exactly the inputs the cascade gives it when y_k is the current response at stage k on the adjacent
   route 0 → 1 → … → k: stage 0 from its generation (prompt NLL, pooled hidden state over prompt + y_0,
   no previous draft: accept_ratio_prev 1.0), stage k ≥ 1 from M_k's verification pass over y_{k−1}
   (prompt NLL, pooled hidden state over prompt + y_{k−1}, accept_ratio_prev = a_{k−1,k} / |y_{k−1}|) and
   the token statistics of y_k under M_k.

One difference from the cascade remains, and only in float rounding: the cascade's y_k (k ≥ 1) is M_k's
accepted prefix of y_{k−1} plus M_k's regeneration, so the token statistics of that prefix come from the
teacher-forced verification pass, here from M_k's own incremental decoding. Both are M_k's distribution at
the same positions; they differ by the reassociation of the same sums (docs/predictor_data.md bounds it, and
tests/predictor_data/test_trace.py checks it against the cascade). The responses are the same tokens
unless a near-tie flips an argmax (as for the cascade's losslessness, docs/cascade.md); the same holds for
an accepted length measured on the prompt cache instead of in one pass.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from asd.core.decision import derive_seed
from asd.core.features import NUM_FEATURES, TokenTable, record_batch_features
from asd.core.verify import greedy_accept
from asd.models.base import GenerationParams


def full_trace(
    engines: Sequence,
    prompts: Sequence[Sequence[int]],  # B prompts, token ids
    sample_ids: np.ndarray,  # [B] int64 (seeds: the cascade's derive_seed(seed, id, stage, 0))
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    table: TokenTable,
    seed: int = 0,
) -> dict:
    """Per-sample arrays of one batch (the training-set fields of asd.predictor_data.schema, unscored).

    Returns: ``prompt_len`` [B] int32, ``features`` [B, K, F] float32, ``draft_len`` [B, K] int32,
    ``accepted_len`` [B, K, K] int32 (k < m; −1 elsewhere), ``accept_frac`` [B, K, K] float32 (k < m; NaN
    elsewhere), ``agree_final`` [B, K] uint8, ``gen_latency_s`` [B, K] and ``verify_latency_s`` [B, K, K]
    float64 seconds (the batch call's wall time / B), ``tokens`` K lists of B int64 arrays (y_k).
    """
    K, B = len(engines), len(prompts)
    if K < 2:
        raise ValueError(f"a full trace needs at least 2 stages, got {K}")
    ids = np.asarray(sample_ids, dtype=np.int64)
    if ids.shape != (B,):
        raise ValueError(f"sample_ids has {ids.size} entries for {B} prompts")
    params = GenerationParams(
        max_new_tokens=max_new_tokens,
        eos_token_ids=tuple(int(e) for e in eos_token_ids),
        hidden=True,
        prompt_nll=True,
    )
    prompts = [list(map(int, p)) for p in prompts]
    prompt_len = np.array([len(p) for p in prompts], np.int32)
    rows = np.arange(B)
    feats = np.full((B, K, NUM_FEATURES), np.nan, np.float32)
    gen_lat = np.full((B, K), np.nan)
    ver_lat = np.full((B, K, K), np.nan)
    acc = np.full((B, K, K), -1, np.int32)
    frac = np.full((B, K, K), np.nan, np.float32)
    tokens: list[list[np.ndarray]] = []
    stats: list[list[np.ndarray]] = []
    quiet = dataclasses.replace(params, hidden=False, prompt_nll=False)
    for m, eng in enumerate(engines):
        # M_m's own response, as engines[m].generate computes it (prefill, then decode) — with the verification
        # of the non-adjacent drafts y_k (k < m − 1) teacher-forced on the prefilled prompt cache in between
        t0 = time.perf_counter()
        sess = eng.new_session(B, seeds=[derive_seed(seed, int(i), m, 0) for i in ids])
        first, first_stats, _ = sess.start(prompts, params)
        nll = sess.prompt_nll
        t_gen = time.perf_counter() - t0
        for k in range(m - 1):
            t1 = time.perf_counter()
            ap = sess.append(tokens[k], quiet)
            sess.truncate(prompt_len.astype(np.int64))  # back to the prompt: the cache generate() decodes from
            ver_lat[:, k, m] = (time.perf_counter() - t1) / B
            # argmax before each draft token (the prompt's next-token argmax = first, greedy) and after the last
            a = np.array(
                [greedy_accept(tokens[k][r], np.concatenate([first[r : r + 1], ap.argmax[r]]))[0] for r in rows],
                np.int64,
            )
            _accepted(acc, frac, k, m, a, tokens[k])
        t1 = time.perf_counter()
        res = sess.decode(first, first_stats, [max_new_tokens] * B, params, release=True)
        sess.close()
        gen_lat[:, m] = (t_gen + time.perf_counter() - t1) / B
        tokens.append([np.asarray(t, np.int64) for t in res.tokens])
        stats.append(list(res.stats))
        if m == 0:
            record_batch_features(
                feats, rows, 0, prompt_len, nll, stats[0], tokens[0], np.full(B, math.nan), res.hidden,
                table, params.eos_token_ids,
            )  # fmt: skip
            continue
        # the adjacent draft y_{m−1}: one full teacher-forced pass, exactly the cascade's verification call
        t1 = time.perf_counter()
        sc = eng.score(
            prompts, tokens[m - 1], params, keep_session=True, seeds=[derive_seed(seed, int(i), m, 0) for i in ids]
        )
        if sc.session is not None:
            sc.session.close()
        ver_lat[:, m - 1, m] = (time.perf_counter() - t1) / B
        a = np.array([greedy_accept(tokens[m - 1][r], sc.argmax[r])[0] for r in rows], np.int64)
        n = _accepted(acc, frac, m - 1, m, a, tokens[m - 1])
        # the cascade's stage-m record after M_m verified the adjacent stage's draft
        casc_stats = [cascade_stats(tokens[m - 1][r], tokens[m][r], sc.stats[r], stats[m][r], int(a[r])) for r in rows]
        record_batch_features(
            feats, rows, m, prompt_len, sc.prompt_nll, casc_stats, tokens[m], a / np.maximum(n, 1), sc.hidden,
            table, params.eos_token_ids,
        )  # fmt: skip
    final = tokens[K - 1]
    agree = np.array(
        [
            [len(tokens[k][r]) == len(final[r]) and np.array_equal(tokens[k][r], final[r]) for k in range(K)]
            for r in rows
        ],
        np.uint8,
    ).reshape(B, K)
    return {
        "prompt_len": prompt_len,
        "features": feats,
        "draft_len": np.array([[len(tokens[k][r]) for k in range(K)] for r in rows], np.int32).reshape(B, K),
        "accepted_len": acc,
        "accept_frac": frac,
        "agree_final": agree,
        "gen_latency_s": gen_lat,
        "verify_latency_s": ver_lat,
        "tokens": tokens,
    }


def _accepted(acc: np.ndarray, frac: np.ndarray, k: int, m: int, a: np.ndarray, drafts: list[np.ndarray]) -> np.ndarray:
    """Store a_{k,m} [B] and a_{k,m} / |y_k| in place; returns |y_k| [B] int64."""
    n = np.array([len(t) for t in drafts], np.int64)
    acc[:, k, m] = a
    frac[:, k, m] = a / np.maximum(n, 1)
    return n


def cascade_stats(
    draft: np.ndarray,  # [n] y_{m−1}
    own: np.ndarray,  # [n'] y_m, M_m's own response
    verify_stats: np.ndarray,  # [n, 5] M_m's teacher-forced statistics of the draft's tokens
    own_stats: np.ndarray,  # [n', 5] M_m's statistics of its own tokens (decoding)
    a: int,  # accepted length a_{m−1,m}
) -> np.ndarray:  # [n', 5] float32
    """The token statistics the cascade holds for y_m after M_m verified y_{m−1} and regenerated the rest.

    The cascade keeps the verification pass's rows for the accepted prefix and for the first rejected position
    (there: the statistics of the rejected draft token, so its logprob column is log p_m(draft token), not that
    of M_m's own token), then the regeneration's rows. Reproduced here when y_m starts with the accepted prefix
    (always, unless a near-tie flipped an argmax); otherwise M_m's own statistics are returned.
    """
    if a >= len(draft):  # fully accepted: the cascade's response is the draft with the verification's rows
        return verify_stats if np.array_equal(draft, own) else own_stats
    if len(own) <= a or not np.array_equal(draft[:a], own[:a]):
        return own_stats
    return np.concatenate([verify_stats[: a + 1], own_stats[a + 1 :]])
