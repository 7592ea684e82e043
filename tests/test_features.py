"""Features: the vectorised batch path equals the per-sample definition; fixed width across stages."""
import numpy as np

from asd.features import FEATURE_NAMES, NUM_FEATURES, TokenTable, batch_features, stage_features, text_features
from asd.predictor import PriorPredictor
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
