"""The full trace against the cascade itself and against the engines' own calls (testbed models, CPU float32).

The same prompts go through the cascade (policy fixed_depth to the last stage: the adjacent route 0→1→2→3,
greedy, gamma 0) and through full_trace. Where the cascade computes a quantity by the same call, the trace
must hold the same bits; the token statistics of stage k ≥ 1's regenerated suffix come from a different
computation path (the cascade decodes from its verification cache, the trace from M_k's own prefill), so
the columns aggregated from them may differ by float rounding only (docs/predictor_data.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from asd.core.features import FEATURE_NAMES, TokenTable
from asd.core.verify import greedy_accept
from asd.models.base import GenerationParams
from asd.predictor_data.trace import cascade_stats, full_trace

N, MAX_NEW = 8, 20
# columns aggregated from per-token statistics (entropy, maxprob, margin, low confidence, logprob)
STAT_COLUMNS = [j for j, n in enumerate(FEATURE_NAMES) if n.split("_")[0] in ("entropy", "maxprob", "margin")] + [
    FEATURE_NAMES.index("low_conf_frac"),
    FEATURE_NAMES.index("mean_logprob"),
]
STAT_TOLERANCE = 1e-4  # measured: ≤ 4e-6 absolute, ≤ 2e-5 relative (float32, 12 prompts)


@pytest.fixture(scope="module")
def run():
    from asd.cascade import Cascade, CascadeConfig
    from asd.core.dp import PolicyConfig
    from asd.models.hf import HFEngine
    from asd.models.loading import load_tokenizer
    from asd.run_config import load_section
    from asd.testbed import tokenizer as tk
    from asd.testbed.predictor_split import prompt_for_sample

    hier = load_section("configs/testbed.yaml", "hierarchy")
    engines = [HFEngine(s.model, dtype="float32", device="cpu", name=s.name, max_context=512) for s in hier.stages]
    tok = load_tokenizer(hier)
    # ids 3, 9, ... spread over tasks and levels (cell = id % 20)
    prompts = [tk.encode(tk.chat_prompt(prompt_for_sample(i, 3)[0].prompt)) for i in range(3, 3 + 6 * N, 6)]
    ids = np.arange(100, 100 + N)
    casc = Cascade(
        engines,
        CascadeConfig(max_new_tokens=MAX_NEW, batch_size=N),
        PolicyConfig(name="fixed_depth"),
        tokenizer=tok,
        eos_token_ids=(tk.EOS_ID,),
    )
    rec = casc.run(prompts, sample_ids=ids)
    tr = full_trace(engines, prompts, ids, MAX_NEW, (tk.EOS_ID,), TokenTable.from_tokenizer(tok, 99))
    return engines, prompts, rec, tr, tk.EOS_ID


def test_features_are_the_cascades(run):
    _, _, rec, tr, _ = run
    # the same responses at every stage (lengths, accepted lengths, final tokens)
    assert np.array_equal(rec["draft_len"], tr["draft_len"])
    for k in range(1, 4):
        assert np.array_equal(rec["accepted_len"][:, k], tr["accepted_len"][:, k - 1, k])
    assert all(np.array_equal(a, b) for a, b in zip(rec["tokens"], tr["tokens"][3]))
    assert rec["accepted_len"][:, 1:].min() < MAX_NEW // 2  # some drafts were rejected early: a real test
    got, want = tr["features"], rec["features"]
    assert np.isfinite(got).all() and got.shape == want.shape == (N, 4, len(FEATURE_NAMES))
    exact = [j for j in range(len(FEATURE_NAMES)) if j not in STAT_COLUMNS]
    assert np.array_equal(got[:, :, exact], want[:, :, exact])  # prompt NLL, hidden projection, ratios, text
    assert np.array_equal(got[:, 0], want[:, 0])  # stage 0: the same generate call, every column
    diff = np.abs(got[:, :, STAT_COLUMNS].astype(np.float64) - want[:, :, STAT_COLUMNS])
    assert diff.max() <= STAT_TOLERANCE, diff.max()
    assert got[:, 0, FEATURE_NAMES.index("accept_ratio_prev")].tolist() == [1.0] * N  # as the cascade records


def test_responses_and_accepted_lengths_are_the_engines_own(run):
    """y_m equals engines[m].generate token for token (and statistic for statistic); the accepted lengths
    measured on the prompt cache equal those of one full teacher-forced pass (engines[m].score)."""
    engines, prompts, _, tr, eos = run
    P = GenerationParams(max_new_tokens=MAX_NEW, eos_token_ids=(eos,), hidden=True, prompt_nll=True)
    for m, eng in enumerate(engines):
        g = eng.generate(prompts, P)
        assert all(np.array_equal(a, b) for a, b in zip(g.tokens, tr["tokens"][m])), m
    for m in range(1, 4):
        for k in range(m):
            sc = engines[m].score(prompts, tr["tokens"][k], P)
            a = [greedy_accept(tr["tokens"][k][r], sc.argmax[r])[0] for r in range(N)]
            assert a == tr["accepted_len"][:, k, m].tolist(), (k, m)
            n = np.array([len(t) for t in tr["tokens"][k]])
            assert np.allclose(tr["accept_frac"][:, k, m], np.array(a) / np.maximum(n, 1))
    lower = np.tril(np.ones((4, 4), bool))  # k >= m: no verification
    assert (tr["accepted_len"][:, lower] == -1).all() and np.isnan(tr["accept_frac"][:, lower]).all()
    final = tr["tokens"][3]
    for k in range(4):
        same = [np.array_equal(tr["tokens"][k][r], final[r]) for r in range(N)]
        assert tr["agree_final"][:, k].tolist() == [int(s) for s in same]
    assert 0 < tr["agree_final"][:, 0].sum() < N  # s0 agrees with s3 on some prompts, not all


def test_cascade_stats_rebuilds_the_cascades_rows():
    draft = np.array([5, 6, 7, 8])
    vs = np.arange(20, dtype=np.float32).reshape(4, 5)
    own = np.array([5, 6, 9, 2])
    os_ = -np.arange(20, dtype=np.float32).reshape(4, 5)
    # accepted 2: verification rows 0, 1 and 2 (the rejected draft token's row), then the own rows
    assert np.array_equal(cascade_stats(draft, own, vs, os_, 2), np.concatenate([vs[:3], os_[3:]]))
    assert cascade_stats(draft, draft, vs, os_, 4) is vs  # fully accepted: the draft stands
    assert cascade_stats(draft, np.array([1, 6, 9]), vs, os_[:3], 2) is not vs  # prefix differs: own rows
