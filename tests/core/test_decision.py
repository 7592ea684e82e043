"""The cascade's fused decision kernels against their numpy twins, on fresh random inputs.

- ``asd.core.decision.decide_proxy_dp`` (``asd._C.proxy_dp``: proxy costs + DP + the predictions' record in one call)
  against ``decide_proxy_dp_ref`` (``proxy_costs_ref`` → ``solve_ref``) and against the composed compiled path
  the cascade used before (``proxy_costs`` → ``asd.core.policies.decide``): identical plans, bit for bit.
- ``asd.core.features.record_batch_features`` (``asd._C.record_features``: features written into the cascade's
  [N, K, F] record) against ``record_batch_features_ref`` (``batch_features_ref``, assigned): bit-identical.
- ``asd.core.decision.decide_mlp_proxy_dp`` (``asd._C.mlp_proxy_dp``: the learned predictor's forward pass + proxy
  costs + DP + the predictions' record in one call) against the two compiled calls it replaces
  (``MLPPredictor.predict_rows`` → ``decide_proxy_dp``): bit-identical; against its numpy twin
  ``decide_mlp_proxy_dp_ref`` (``mlp_forward_ref`` → ``decide_proxy_dp_ref``): the same actions, values within 1e-6.
- The whole cascade with the compiled decision path and with the twins gives the same records (prior and MLP).
"""
import math

import numpy as np
import pytest

import asd.core.decision as decision_mod
import asd.core.features as features_mod
from asd.cascade import Cascade, CascadeConfig
from asd.core.decision import (Decider, decide_mlp_proxy_dp, decide_mlp_proxy_dp_ref, decide_proxy_dp,
                               decide_proxy_dp_ref)
from asd.core.mlp import MLPPredictor, random_weights
from asd.core.dp import PolicyConfig
from asd.core.policies import decide
from asd.core.routing import proxy_costs
from asd.core.predictor import PriorPredictor
from asd.core.features import (FEATURE_NAMES, NUM_FEATURES, TokenTable, batch_features, batch_features_ref, record_batch_features,
                          record_batch_features_ref)


def _need(name):
    from asd._ext import get_ext

    if not hasattr(get_ext(), name):
        pytest.skip(f"asd._C.{name} not built (make build)")


def _plans_equal(a, b):
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.next, b.next)
    np.testing.assert_array_equal(a.value, b.value)


@pytest.mark.parametrize("seed", range(6))
def test_decide_proxy_dp_bit_identical_to_twin_and_composed_path(seed):
    _need("proxy_dp")
    rng = np.random.default_rng(seed)
    N = int(rng.integers(1, 40))
    K = int(rng.choice([2, 3, 4, 5, 7]))
    S = int(rng.choice([1, 2, 5, 9, 20]))
    B = int(rng.integers(1, N + 1))
    rows = rng.permutation(N)[:B].astype(rng.choice([np.int64, np.int32]))
    plen = rng.integers(1, 500, N).astype(rng.choice([np.int32, np.int64]))
    resp = [rng.integers(0, 9, int(n)) for n in rng.choice([0, 1, 5, 40, 300], N)]
    acc = rng.random((B, K, K)) * 1.4 - 0.2        # outside [0, 1] too: clipped, as proxy_costs does
    size = np.sort(rng.random(K) * 100 + 0.5)
    r = rng.random((B, S, K)).astype(rng.choice([np.float32, np.float64]))
    r[:, :, -1] = 1.0
    cur = rng.integers(0, K, B)
    for lam, kappa in ((1.0, 0.0), (rng.random() * 3, 0.7), (math.inf, 0.0), (0.0, 0.0)):
        pred, pred_ref = (np.full((N, K, K), np.nan, np.float32) for _ in range(2))
        got = decide_proxy_dp(plen, resp, acc, size, r, cur, lam, kappa, rows=rows, predictions=pred)
        want = decide_proxy_dp_ref(plen, resp, acc, size, r, cur, lam, kappa, rows=rows, predictions=pred_ref)
        _plans_equal(got, want)
        np.testing.assert_array_equal(pred, pred_ref)   # r.mean(1) at [rows, cur], NaN elsewhere
        # the path the cascade took before: compiled proxy_costs, then decide → compiled solve
        L = np.array([len(resp[i]) for i in rows])
        composed = decide(PolicyConfig(name="dp", lam=lam, kappa=kappa), cur, K, r=r,
                          cost=proxy_costs(plen[rows], L, acc, size))
        _plans_equal(got, composed)
    # without rows: [B] inputs, responses given as lengths or as arrays
    sub = [resp[i] for i in rows]
    _plans_equal(decide_proxy_dp(plen[rows], sub, acc, size, r, cur, 1.0),
                 decide_proxy_dp_ref(plen[rows], sub, acc, size, r, cur, 1.0))


def test_decide_proxy_dp_rejects_bad_input():
    _need("proxy_dp")
    B, K = 3, 3
    plen, resp = np.full(B, 10), [np.zeros(4, np.int64)] * B
    acc, size, r = np.full((B, K, K), 0.5), np.array([1.0, 2.0, 4.0]), np.full((B, 1, K), 0.5)
    cur = np.zeros(B, np.int64)
    bad = acc.copy()
    bad[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="cost"):
        decide_proxy_dp(plen, resp, bad, size, r, cur, 1.0)
    with pytest.raises(ValueError, match="probabilities"):
        decide_proxy_dp(plen, resp, acc, size, r + 1.0, cur, 1.0)
    with pytest.raises(ValueError, match="current"):
        decide_proxy_dp(plen, resp, acc, size, r, cur + K, 1.0)
    with pytest.raises(ValueError, match="current"):
        decide_proxy_dp(plen, resp, acc, size, r, cur.astype(float), 1.0)
    with pytest.raises(ValueError, match="rows"):
        decide_proxy_dp(plen, resp, acc, size, r, cur, 1.0, rows=np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="lam"):
        decide_proxy_dp(plen, resp, acc, size, r, cur, -1.0)
    with pytest.raises(ValueError, match="accept_mean"):
        decide_proxy_dp(plen, resp, acc[:, :2], size, r, cur, 1.0)
    with pytest.raises(ValueError, match="resp_len"):
        decide_proxy_dp(plen, resp[:2], acc, size, r, cur, 1.0)


def _mlp_case(rng, K, S, hidden, N, B):
    """An MLP predictor, a feature record [N, K, F] finite at [rows, current] (NaN elsewhere) and the DP's inputs."""
    w = random_weights(rng, FEATURE_NAMES, K, S, hidden, isotonic=bool(rng.random() < 0.7))
    rows = rng.permutation(N)[:B]
    cur = rng.integers(0, K, B)
    feats = np.full((N, K, NUM_FEATURES), np.nan, np.float32)
    feats[rows, cur] = 2 * rng.standard_normal((B, NUM_FEATURES))
    plen = rng.integers(1, 500, N).astype(rng.choice([np.int32, np.int64]))
    resp = [rng.integers(0, 9, int(n)) for n in rng.choice([0, 1, 5, 40, 300], N)]
    size = np.sort(rng.random(K) * 100 + 0.5)
    return w, feats, plen, resp, rows, cur, size


@pytest.mark.parametrize("seed", range(6))
def test_decide_mlp_proxy_dp_equals_the_two_calls_and_the_twin(seed):
    _need("mlp_proxy_dp")
    rng = np.random.default_rng(100 + seed)
    K = int(rng.choice([2, 3, 4, 5]))
    S = int(rng.choice([1, 3, 5, 7]))
    hidden = [(16,), (8, 8), (12,)][seed % 3]
    N = int(rng.integers(1, 40))
    B = int(rng.integers(1, N + 1))
    w, feats, plen, resp, rows, cur, size = _mlp_case(rng, K, S, hidden, N, B)
    pred = MLPPredictor(w)
    assert pred.compiled is not None
    for lam, kappa in ((1.0, 0.0), (rng.random() * 3, 0.7), (math.inf, 0.0), (0.0, 0.0)):
        got_rec, two_rec, ref_rec = (np.full((N, K, K), np.nan, np.float32) for _ in range(3))
        got = decide_mlp_proxy_dp(pred, feats, plen, resp, rows, cur, size, lam, kappa, predictions=got_rec)
        r, acc = pred.predict_rows(feats, rows, cur, K)   # the two compiled calls the fused one replaces
        two = decide_proxy_dp(plen, resp, acc, size, r, cur, lam, kappa, rows=rows, predictions=two_rec)
        _plans_equal(got, two)
        np.testing.assert_array_equal(got_rec, two_rec)   # r.mean(1) at [rows, cur], NaN elsewhere
        ref = decide_mlp_proxy_dp_ref(w, feats, plen, resp, rows, cur, size, lam, kappa, predictions=ref_rec)
        np.testing.assert_array_equal(got.action, ref.action)
        np.testing.assert_array_equal(got.next, ref.next)
        np.testing.assert_allclose(got.value, ref.value, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(got_rec, ref_rec, rtol=0, atol=1e-6, equal_nan=True)
    # the Decider takes this path for policy dp on the proxy costs, and gives the same plan and record
    dec = Decider(PolicyConfig(name="dp", lam=1.0, kappa=0.5), K, size, pred)
    a, b = (np.full((N, K, K), np.nan, np.float32) for _ in range(2))
    _plans_equal(dec.decide(feats, plen, resp, rows, cur, np.arange(N), a),
                 decide_mlp_proxy_dp(pred, feats, plen, resp, rows, cur, size, 1.0, 0.5, predictions=b))
    np.testing.assert_array_equal(a, b)
    # without skips the Decider leaves the fused call (adjacent moves only: stop or the next stage)
    nos = Decider(PolicyConfig(name="dp", lam=0.5, skips=False), K, size, pred)
    act = nos.decide(feats, plen, resp, rows, cur, np.arange(N), a).action
    assert ((act == -1) | (act == cur + 1)).all()


def test_decide_mlp_proxy_dp_rejects_bad_input():
    _need("mlp_proxy_dp")
    rng = np.random.default_rng(3)
    K, N, B = 4, 6, 4
    w, feats, plen, resp, rows, cur, size = _mlp_case(rng, K, 5, (8,), N, B)
    pred = MLPPredictor(w)
    args = (plen, resp, rows, cur, size, 1.0)
    bad = feats.copy()
    bad[rows[2], cur[2], 7] = np.inf
    with pytest.raises(ValueError, match=rf"features\[2, 7\] \({FEATURE_NAMES[7]}\)"):
        decide_mlp_proxy_dp(pred, bad, *args)
    with pytest.raises(ValueError, match="K=4"):   # a record of another K than the checkpoint's
        decide_mlp_proxy_dp(pred, np.zeros((N, 3, NUM_FEATURES), np.float32), plen, resp, rows, cur % 3, size[:3],
                            1.0)
    with pytest.raises(ValueError, match="F=39"):
        decide_mlp_proxy_dp(pred, feats[:, :, :-1].copy(), *args)
    with pytest.raises(ValueError, match="float32"):
        decide_mlp_proxy_dp(pred, feats.astype(np.float64), *args)
    with pytest.raises(ValueError, match="rows"):
        decide_mlp_proxy_dp(pred, feats, plen, resp, np.array([0, 1, 2, N]), cur, size, 1.0)
    with pytest.raises(ValueError, match="stage"):
        decide_mlp_proxy_dp(pred, feats, plen, resp, rows, np.array([0, 1, K, 0]), size, 1.0)
    with pytest.raises(ValueError, match="current"):
        decide_mlp_proxy_dp(pred, feats, plen, resp, rows, cur.astype(float), size, 1.0)
    with pytest.raises(ValueError, match="size"):
        decide_mlp_proxy_dp(pred, feats, *args[:4], size[:3], 1.0)
    with pytest.raises(ValueError, match="lam"):
        decide_mlp_proxy_dp(pred, feats, *args[:5], -1.0)
    with pytest.raises(ValueError, match="predictions"):
        decide_mlp_proxy_dp(pred, feats, *args, predictions=np.zeros((N, K, K)))
    from asd._ext import get_ext

    with pytest.raises(ValueError, match="MLPForward"):
        get_ext().mlp_proxy_dp(object(), feats, plen, resp, rows, cur, size, 0.05, 1.0, 0.0, None)


def _random_record_inputs(rng, N, V):
    lens = rng.choice([0, 1, 2, 7, 8, 9, 31, 129, 300], size=N)
    toks = [rng.integers(0, V, size=n).astype(rng.choice([np.int32, np.int64])) for n in lens]
    stats = [rng.random((n, 5)).astype(rng.choice([np.float32, np.float64])) for n in lens]
    return toks, stats


@pytest.mark.parametrize("seed", range(4))
def test_record_batch_features_bit_identical_to_twin(seed):
    _need("record_features")
    rng = np.random.default_rng(seed)
    V, N, K = 50, 20, 3
    table = TokenTable(*rng.integers(-2, 4, size=(4, V)).astype(np.float64).clip(0, None)[:3],
                       rng.integers(-2, 3, size=V).astype(np.float64))
    toks, stats = _random_record_inputs(rng, N, V)
    eos_ids = (3, 7)
    for t in toks[:4]:
        if len(t):
            t[-1] = 7   # some responses end at EOS
    plen = rng.integers(5, 50, N).astype(np.int32)
    for stage, hidden in ((2, True), (0, False)):
        R = int(rng.integers(1, N + 1))
        rows = rng.permutation(N)[:R]
        nll = rng.random(R)
        ap = np.where(rng.random(R) < 0.3, np.nan, rng.random(R))
        h = rng.standard_normal((R, 24)).astype(np.float32) if hidden else None
        got, want = (np.full((N, K, NUM_FEATURES), np.nan, np.float32) for _ in range(2))
        record_batch_features(got, rows, stage, plen, nll, stats, toks, ap, h, table, eos_ids)
        record_batch_features_ref(want, rows, stage, plen, nll, stats, toks, ap, h, table, eos_ids)
        np.testing.assert_array_equal(got, want)   # NaN (untouched rows) included
        # accept_prev None: no previous acceptance for any row, as all-NaN (column 19 = 1)
        none, nan = (np.full((N, K, NUM_FEATURES), np.nan, np.float32) for _ in range(2))
        record_batch_features(none, rows, stage, plen, nll, stats, toks, None, h, table, eos_ids)
        record_batch_features_ref(nan, rows, stage, plen, nll, stats, toks, np.full(R, np.nan), h, table, eos_ids)
        np.testing.assert_array_equal(none, nan)
        record_batch_features_ref(none, rows, stage, plen, nll, stats, toks, None, h, table, eos_ids)
        np.testing.assert_array_equal(none, nan)
        assert (nan[rows, stage, 19] == 1).all()


def test_ended_eos_from_last_tokens_matches_explicit_flags():
    _need("decision_features")
    rng = np.random.default_rng(5)
    V, R = 30, 12
    table = TokenTable.empty(V)
    toks, stats = _random_record_inputs(rng, R, V)
    for t in toks[::2]:
        if len(t):
            t[-1] = 2
    ended = np.array([len(t) > 0 and int(t[-1]) in (2, 9) for t in toks])
    args = (np.arange(R), rng.random(R), stats, toks)
    rest = (np.full(R, np.nan), None, table)
    want = batch_features_ref(1, *args, ended, *rest)
    np.testing.assert_array_equal(batch_features(1, *args, None, *rest, eos_token_ids=(2, 9)), want)
    np.testing.assert_array_equal(batch_features_ref(1, *args, None, *rest, eos_token_ids=(2, 9)), want)
    assert want[:, 4].any() and not want[:, 4].all()


def test_record_features_rejects_bad_input():
    _need("record_features")
    N, K = 3, 2
    feats = np.zeros((N, K, NUM_FEATURES), np.float32)
    toks, stats = [np.zeros(2, np.int64)] * N, [np.zeros((2, 5), np.float32)] * N
    args = (np.full(N, 5), np.zeros(2), stats, toks, np.zeros(2), None, TokenTable.empty(4))
    with pytest.raises(ValueError, match="rows"):
        record_batch_features(feats, np.array([0, 3]), 0, *args)
    with pytest.raises(ValueError, match="stage"):
        record_batch_features(feats, np.array([0, 1]), K, *args)
    with pytest.raises(ValueError, match="features"):
        record_batch_features(feats.astype(np.float64), np.array([0, 1]), 0, *args)
    from asd._ext import get_ext

    with pytest.raises(ValueError, match="proj"):   # the projected hidden state must fill columns 23..
        get_ext().record_features(feats, np.array([0, 1]), 0, *args[:5], np.zeros((2, 5), np.float32),
                                  args[6].matrix, ())


@pytest.mark.parametrize("predictor", ["prior", "mlp"])
def test_cascade_records_equal_with_compiled_and_twin_decision_path(tmp_path, monkeypatch, predictor):
    _need("proxy_dp")
    _need("mlp_proxy_dp")
    import asd.core.mlp as mlp_mod

    from asd.models.hf import HFEngine
    from asd.models.random_init import random_family

    dirs = random_family(tmp_path, stages=3, seed=4, noise=0.05, hidden_size=16, num_layers=1, num_heads=2,
                         num_kv_heads=1, intermediate_size=32, init_std=0.3)
    engines = [HFEngine(d, dtype="float64", device="cpu", name=f"s{k}") for k, d in enumerate(dirs)]
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, engines[0].vocab_size, int(rng.integers(3, 12))).tolist() for _ in range(10)]

    weights = random_weights(np.random.default_rng(1), FEATURE_NAMES, 3, 5, (16,))

    def run():
        # the MLP: compiled forward pass (fused with the DP: asd._C.mlp_proxy_dp) or, patched, its numpy twin
        pred = PriorPredictor(r_prior=(0.3, 0.8, 1.0)) if predictor == "prior" else MLPPredictor(weights)
        c = Cascade(engines, CascadeConfig(max_new_tokens=12, batch_size=4), PolicyConfig(name="dp", lam=1.0),
                    predictor=pred, eos_token_ids=(2,))
        c.decider.sizes = np.array([1.0, 3.0, 9.0])
        return c.run(prompts)

    fast = run()
    monkeypatch.setattr(decision_mod, "get_ext", lambda: None)
    monkeypatch.setattr(features_mod, "get_ext", lambda: None)
    monkeypatch.setattr(mlp_mod, "get_ext", lambda: None)
    twin = run()
    for k in ("features", "predictions", "decision", "final_stage", "draft_len", "accepted_len"):
        if k == "predictions" and predictor == "mlp":   # the forward pass and its twin agree within 1e-6
            np.testing.assert_allclose(fast[k], twin[k], rtol=0, atol=1e-6, equal_nan=True)
            assert np.isfinite(fast[k]).any()
        else:
            np.testing.assert_array_equal(fast[k], twin[k], err_msg=k)
    assert [t.tolist() for t in fast["tokens"]] == [t.tolist() for t in twin["tokens"]]
    assert (fast["decision"] >= 0).any() and (fast["decision"] == -1).any()   # moves and stops were decided
