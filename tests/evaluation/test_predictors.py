"""The predictor seam: factories, per-seed and ablation checkpoints, the check against the hierarchy."""
import numpy as np
import pytest

from asd.core.predictor import PriorPredictor
from asd.evaluation import predictors
from asd.evaluation.config import PredictorSpec
from asd.models.config import HierarchyConfig, StageConfig


def _hier(K=4):
    return HierarchyConfig(name="t", stages=[StageConfig(name=f"s{k}", model=f"testbed:s{k}") for k in range(K)])


class Trained:
    """A stand-in for a trained predictor: it knows the stages it was trained for."""

    num_draws = 2

    def __init__(self, names):
        self.stage_names = names

    def predict(self, features, stage, K):
        B = features.shape[0]
        return np.full((B, 2, K), 0.5), np.full((B, K, K), 0.5)


def trained_for_other_stages(spec, hierarchy, seed, ablation):
    return Trained(["testbed:s0", "testbed:s1", "testbed:s2", "other:s3"])


def trained_for_these_stages(spec, hierarchy, seed, ablation):
    return Trained(predictors.stage_names(hierarchy))


class WrongK:
    num_draws = 1

    def predict(self, features, stage, K):
        return np.full((features.shape[0], 1, K + 1), 0.5), np.zeros((features.shape[0], K, K))


def wrong_k(spec, hierarchy, seed, ablation):
    return WrongK()


def test_checkpoint_for_seed_and_ablation():
    spec = PredictorSpec(checkpoint="runs/pred/seed{seed}/ckpt", ablation_checkpoints={"no_text": "runs/abl-{seed}"})
    assert predictors.checkpoint_for(spec, 3, None) == "runs/pred/seed3/ckpt"
    assert predictors.checkpoint_for(spec, 3, "kappa0") == "runs/pred/seed3/ckpt"
    assert predictors.checkpoint_for(spec, 2, "no_text") == "runs/abl-2"
    with pytest.raises(ValueError, match="needs predictor.ablation_checkpoints.no_hidden"):
        predictors.checkpoint_for(spec, 0, "no_hidden")


def test_prior_factory_and_its_checks():
    p = predictors.load(PredictorSpec(r_prior=[0.2, 0.4, 0.6, 1.0]), _hier(), 0, None)
    r, _ = p.predict(np.zeros((2, 5)), np.zeros(2, np.int64), 4)
    assert r[0, 0].tolist() == [0.2, 0.4, 0.6, 1.0]
    with pytest.raises(ValueError, match="r_prior has 3 entries; the hierarchy has K=4"):
        predictors.load(PredictorSpec(r_prior=[0.2, 0.4, 1.0]), _hier(), 0, None)


def test_a_predictor_of_other_stages_is_refused():
    spec = PredictorSpec(factory="tests.evaluation.test_predictors:trained_for_other_stages")
    with pytest.raises(ValueError, match=r"trained for stages .*other:s3.*hierarchy's stages are"):
        predictors.load(spec, _hier(), 0, None)
    ok = predictors.load(PredictorSpec(factory="tests.evaluation.test_predictors:trained_for_these_stages"),
                         _hier(), 0, None)
    assert ok.num_draws == 2
    with pytest.raises(ValueError, match=r"answers r \(1, 1, 5\).*needs \[1, 1, 4\]"):
        predictors.load(PredictorSpec(factory="tests.evaluation.test_predictors:wrong_k"), _hier(), 0, None)


def test_factory_errors_name_the_spec():
    with pytest.raises(ValueError, match="predictor factory 'asd.nowhere:f' does not resolve"):
        predictors.load(PredictorSpec(factory="asd.nowhere:f"), _hier(), 0, None)
    with pytest.raises(ValueError, match="checkpoint is empty"):
        predictors.load(PredictorSpec(factory="asd.evaluation.predictors:mlp"), _hier(), 0, None)


def test_mlp_or_prior_falls_back_to_the_prior_without_a_checkpoint(capsys):
    spec = PredictorSpec(factory="asd.evaluation.predictors:mlp_or_prior", checkpoint="/nonexistent/ckpt")
    p = predictors.load(spec, _hier(), 0, None)
    assert isinstance(p, PriorPredictor)
    assert "using the prior" in capsys.readouterr().err
