"""Policy "confidence": a threshold on the stage's own mean top-1 probability, no predictor."""
import numpy as np
import pytest

from asd.core import policies as P
from asd.core.decision import Decider
from asd.core.dp import STOP, PolicyConfig, route
from asd.core.features import FEATURE_NAMES, NUM_FEATURES


def test_confidence_threshold_by_hand():
    conf = np.array([0.9, 0.5, np.nan, 0.1, 0.8])
    cur = np.array([0, 0, 1, 3, 2])
    p = P.confidence_threshold(conf, cur, 4, 0.8)
    # 0.9 ≥ τ stops; 0.5 goes on; NaN never stops; the last stage stops whatever its confidence; ≥ is inclusive
    assert p.action.tolist() == [STOP, 1, 2, STOP, STOP]
    # from every node other than the current one the route goes on (their confidence is not known yet)
    assert p.next[1].tolist() == [1, 2, 3, STOP]
    assert p.next[0].tolist() == [STOP, 2, 3, STOP]
    assert route(p, cur).tolist() == [0, 3, 3, 3, 2]
    assert np.isnan(p.value).all()


def test_confidence_threshold_checks_inputs():
    with pytest.raises(ValueError, match="tau"):
        P.confidence_threshold(np.array([0.5]), np.array([0]), 4, 1.5)
    with pytest.raises(ValueError, match="conf must have shape"):
        P.confidence_threshold(np.array([0.5, 0.2]), np.array([0]), 4, 0.5)
    with pytest.raises(ValueError, match="current must hold stages"):
        P.confidence_threshold(np.array([0.5]), np.array([4]), 4, 0.5)


def test_decide_dispatches_confidence():
    cfg = PolicyConfig(name="confidence", tau=0.7)
    plan = P.decide(cfg, np.array([0, 1]), 3, confidence=np.array([0.75, 0.6]))
    assert plan.action.tolist() == [STOP, 2]
    with pytest.raises(ValueError, match="needs confidence"):
        P.decide(cfg, np.array([0]), 3)


class _Boom:
    num_draws = 1

    def predict(self, features, stage, K):  # policy "confidence" must not ask the predictor
        raise AssertionError("the confidence policy called the predictor")


def test_decider_reads_the_maxprob_mean_feature_and_no_predictor():
    rng = np.random.default_rng(0)
    N, K = 6, 4
    feats = rng.random((N, K, NUM_FEATURES)).astype(np.float32)
    col = FEATURE_NAMES.index("maxprob_mean")
    feats[:, :, col] = np.array([0.95, 0.2, 0.85, 0.4, 0.99, 0.1], np.float32)[:, None]
    d = Decider(PolicyConfig(name="confidence", tau=0.8), K, np.ones(K), predictor=_Boom())
    live = np.arange(N)
    cur = np.array([0, 0, 1, 2, 3, 1])
    preds = np.full((N, K, K), np.nan, np.float32)
    plan = d.decide(feats, np.full(N, 10), [np.zeros(3)] * N, live, cur, live.astype(np.int64), preds)
    assert plan.action.tolist() == [STOP, 1, STOP, 3, STOP, 2]
    assert np.isnan(preds).all()  # no prediction is recorded: there is no predictor
