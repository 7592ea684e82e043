"""Features: the vectorised batch path equals the per-sample definition; fixed width across stages."""
import numpy as np
import pytest

from asd.core.features import (FEATURE_NAMES, NUM_FEATURES, TokenTable, batch_features, batch_features_ref, stage_features,
                          text_features)
from asd.core.predictor import PriorPredictor
from asd.testbed.tokenizer import load_tokenizer


def test_batch_features_equal_per_sample_definition():
    tok = load_tokenizer()
    V = len(tok)
    table = TokenTable.from_tokenizer(tok, V)
    rng = np.random.default_rng(0)
    R = 16
    # bracket-free responses so that the unclamped depth of the batch path equals the clamped one
    ok = [i for i in range(3, V) if tok.decode([i]) not in "()[]{}"]
    toks = [rng.choice(ok, size=rng.integers(0, 40)) for _ in range(R)]
    stats = [rng.random((len(t), 5)).astype(np.float32) for t in toks]
    hid = rng.standard_normal((R, 32)).astype(np.float32)
    pl, nll = rng.integers(5, 50, R), rng.random(R)
    eos, ap = rng.random(R) < 0.5, np.r_[np.nan, rng.random(R - 1)]
    b = batch_features(1, pl, nll, stats, toks, eos, ap, hid, table)
    assert b.shape == (R, NUM_FEATURES) == (R, len(FEATURE_NAMES))
    for i in range(R):
        s = stage_features(1, pl[i], nll[i], stats[i], eos[i], ap[i], tok.decode(toks[i].tolist()), hid[i])
        np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-5, err_msg=f"row {i}")


def test_text_features_and_hidden_width():
    assert text_features("a(b[c]d)\n12") == (2 / 11, 2.0, 2.0)
    f1 = stage_features(0, 3, 1.0, np.zeros((2, 5)), True, np.nan, "", np.ones(32))
    f2 = stage_features(0, 3, 1.0, np.zeros((2, 5)), True, np.nan, "", np.ones(128))
    assert f1.shape == f2.shape == (NUM_FEATURES,)


def test_prior_predictor_shapes():
    r, a = PriorPredictor(num_draws=4).predict(np.zeros((5, NUM_FEATURES)), np.zeros(5, int), 3)
    assert r.shape == (5, 4, 3) and (r[..., -1] == 1).all() and a.shape == (5, 3, 3)


def _ext_or_skip(name):
    from asd._ext import get_ext

    ext = get_ext()
    if ext is None or not hasattr(ext, name):
        pytest.skip(f"asd._C.{name} not built (make build)")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_batch_features_bit_identical_to_numpy_twin(seed):
    _ext_or_skip("decision_features")
    rng = np.random.default_rng(seed)
    V, R = 50, 24
    # integer text facts (as TokenTable.from_tokenizer makes them), brackets in both directions
    table = TokenTable(*rng.integers(-2, 4, size=(4, V)).astype(np.float64).clip(0, None)[:3],
                       rng.integers(-2, 3, size=V).astype(np.float64))
    lens = rng.choice([0, 1, 2, 7, 8, 9, 31, 129, 300], size=R)
    lens[0] = 5
    toks = [rng.integers(0, V, size=n).astype(rng.choice([np.int32, np.int64])) for n in lens]
    stats = [rng.random((n, 5)).astype(rng.choice([np.float32, np.float64])) for n in lens]
    hid = rng.standard_normal((R, 24)).astype(np.float32)
    pl, nll = rng.integers(5, 50, R).astype(np.int32), rng.random(R)
    eos, ap = rng.random(R) < 0.5, np.where(rng.random(R) < 0.3, np.nan, rng.random(R))
    for stage, h in ((2, hid), (0, None)):
        got = batch_features(stage, pl, nll, stats, toks, eos, ap, h, table)
        want = batch_features_ref(stage, pl, nll, stats, toks, eos, ap, h, table)
        np.testing.assert_array_equal(got, want)
    # all responses non-empty (the twin's single-pass branch), and all empty
    full = [i for i in range(R) if lens[i]]
    args = (pl[full], nll[full], [stats[i] for i in full], [toks[i] for i in full], eos[full], ap[full], hid[full])
    np.testing.assert_array_equal(batch_features(1, *args, table), batch_features_ref(1, *args, table))
    empty = [np.zeros(0, np.int64)] * 3
    e_args = (pl[:3], nll[:3], [np.zeros((0, 5), np.float32)] * 3, empty, eos[:3], ap[:3], None)
    np.testing.assert_array_equal(batch_features(1, *e_args, table), batch_features_ref(1, *e_args, table))


def test_compiled_batch_features_nan_signed_zero_and_negative_stats():
    """Token statistics with NaN (min/max keep the first NaN, as np.minimum/np.maximum), ±0 and negative values:
    the kernel's vectorised min/max/NaN tracking equals the twin bit for bit."""
    _ext_or_skip("decision_features")
    rng = np.random.default_rng(12)
    V, R = 20, 30
    table = TokenTable(*rng.integers(0, 4, size=(3, V)).astype(np.float64), rng.integers(-2, 3, V).astype(float))
    lens = rng.choice([1, 2, 5, 8, 9, 33, 140], size=R)
    toks = [rng.integers(0, V, size=n) for n in lens]
    stats = []
    for n in lens:
        st = rng.choice([-1.5, -0.0, 0.0, 0.25, 0.75, 2.0], size=(n, 5)) + rng.random((n, 5)) * (rng.random() < 0.5)
        st[rng.random((n, 5)) < 0.1] = np.nan
        stats.append(st.astype(rng.choice([np.float32, np.float64])))
    pl, nll, eos, ap = rng.integers(5, 50, R), rng.random(R), rng.random(R) < 0.5, rng.random(R)
    got = batch_features(1, pl, nll, stats, toks, eos, ap, None, table)
    want = batch_features_ref(1, pl, nll, stats, toks, eos, ap, None, table)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[:, 5:17]).any() and not np.isnan(got[:, 5:17]).all()
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))   # -0.0 stays -0.0


def test_compiled_batch_features_rejects_bad_input():
    _ext_or_skip("decision_features")
    table = TokenTable.empty(10)
    one = np.ones(1)
    with pytest.raises(IndexError, match="token id 10"):
        batch_features(0, one, one, [np.zeros((1, 5), np.float32)], [np.array([10])], one, one, None, table)
    with pytest.raises(ValueError, match=r"shape \[n, 5\]"):
        batch_features(0, one, one, [np.zeros((2, 5), np.float32)], [np.array([1])], one, one, None, table)
