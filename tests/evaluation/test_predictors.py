"""The predictor of each cell: the config's `predictor` section, per-seed and ablation checkpoints, the checks
against the hierarchy (the committed testbed predictor is the real one)."""
from pathlib import Path

import numpy as np
import pytest

from asd.core.features import NUM_FEATURES
from asd.core.mlp import MLPPredictor
from asd.core.predictor import PriorPredictor
from asd.evaluation import predictors
from asd.evaluation.config import EvaluationConfig
from asd.models.config import HierarchyConfig, StageConfig
from asd.predictor.config import PredictorConfig


def _hier(models=("testbed:s0", "testbed:s1", "testbed:s2", "testbed:s3")):
    return HierarchyConfig(name="t", stages=[StageConfig(name=f"s{k}", model=m) for k, m in enumerate(models)])


def test_checkpoint_for_seed_and_ablation():
    pred = PredictorConfig(kind="mlp", checkpoint="runs/pred/seed{seed}/ckpt")
    ev = EvaluationConfig(ablation_checkpoints={"no_text": "runs/abl-{seed}"})
    assert predictors.checkpoint_for(pred, ev, 3, None) == "runs/pred/seed3/ckpt"
    assert predictors.checkpoint_for(pred, ev, 3, "kappa0") == "runs/pred/seed3/ckpt"
    assert predictors.checkpoint_for(pred, ev, 2, "no_text") == "runs/abl-2"
    with pytest.raises(ValueError, match="needs evaluation.ablation_checkpoints.no_hidden"):
        predictors.checkpoint_for(pred, ev, 0, "no_hidden")


def test_cell_predictor_sections():
    ev = EvaluationConfig(ablation_checkpoints={"no_text": "runs/abl-{seed}"})
    assert predictors.cell_predictor(None, ev, 0, None) == PredictorConfig(kind="prior")
    with pytest.raises(ValueError, match="retrains the predictor without some features; the prior reads none"):
        predictors.cell_predictor(PredictorConfig(kind="prior"), ev, 0, "no_text")
    committed = PredictorConfig(kind="mlp", checkpoint="testbed:predictor")
    assert predictors.cell_predictor(committed, ev, 1, None) == committed  # testbed:<name> is kept as it is
    rel = predictors.cell_predictor(PredictorConfig(kind="mlp", checkpoint="runs/p{seed}"), ev, 4, "no_text")
    assert rel.kind == "mlp" and rel.checkpoint == str(Path("runs/abl-4").resolve())  # any working folder reads it


def test_the_prior_and_the_committed_predictor_load():
    p = predictors.load({"hierarchy": _hier()})
    assert isinstance(p, PriorPredictor)
    m = predictors.load({"hierarchy": _hier(), "predictor": PredictorConfig(kind="mlp", checkpoint="testbed:predictor")})
    assert isinstance(m, MLPPredictor) and m.num_draws == 5
    r, acc = m.predict(np.zeros((2, NUM_FEATURES), np.float32), np.zeros(2, np.int64), 4)
    assert r.shape == (2, 5, 4) and acc.shape == (2, 4, 4)


def test_a_predictor_of_other_stages_or_a_missing_one_is_refused():
    other = {"hierarchy": _hier(("testbed:s0", "testbed:s1", "testbed:s3", "testbed:s2")),
             "predictor": PredictorConfig(kind="mlp", checkpoint="testbed:predictor")}
    with pytest.raises(ValueError, match=r"trained for stages .*the hierarchy's stages are"):
        predictors.load(other)
    three = {"hierarchy": _hier(("testbed:s0", "testbed:s1", "testbed:s3")),
             "predictor": PredictorConfig(kind="mlp", checkpoint="testbed:predictor")}
    with pytest.raises(ValueError, match=r"trained for K=4 stages"):
        predictors.load(three)
    with pytest.raises(FileNotFoundError, match="no predictor checkpoint"):
        predictors.load({"hierarchy": _hier(), "predictor": PredictorConfig(kind="mlp", checkpoint="/nonexistent/c")})


class WrongK:
    num_draws = 1

    def predict(self, features, stage, K):
        return np.full((features.shape[0], 1, K + 1), 0.5), np.zeros((features.shape[0], K, K))


def test_check_names_the_shapes():
    with pytest.raises(ValueError, match=r"answers r \(1, 1, 5\).*needs \[1, 1, 4\]"):
        predictors.check(WrongK(), _hier(), "predictor x")
    with pytest.raises(ValueError, match="is not a Predictor"):
        predictors.check(object(), _hier(), "predictor x")
