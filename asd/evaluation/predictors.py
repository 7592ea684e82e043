"""The predictor of each cell (docs/evaluation.md#predictor): the run config's ``predictor`` section.

An evaluation config names its predictor as every run config does, in the section ``predictor``
(``asd.predictor.config.PredictorConfig``): ``kind: prior`` (``PriorPredictor``, input-independent; the default
when the section is absent) or ``kind: mlp`` with ``checkpoint`` (a directory written by ``asd train-predictor``
or ``testbed:predictor``, the one committed for the testbed). The evaluation adds two rules, applied by
``cell_predictor`` when it writes a cell's own ``predictor`` section:

- ``{seed}`` in the checkpoint path is replaced by the cell's seed (seed s evaluates the predictor trained
  with seed s);
- a feature ablation (``no_hidden``, ``no_token_stats``, ``no_text``) reads
  ``evaluation.ablation_checkpoints[ablation]`` instead (the predictor retrained without those features).

``load(sections)`` builds a cell's predictor through ``asd.predictor.checkpoint.predictor_for`` (which checks a
checkpoint's hashes, feature schema, K and stage names against the hierarchy; cached per process) and then
``check``s the shapes of one prediction, before any model runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asd.core.features import NUM_FEATURES
from asd.core.predictor import Predictor
from asd.evaluation.config import FEATURE_ABLATIONS, EvaluationConfig
from asd.predictor.config import PredictorConfig


def checkpoint_for(pred: PredictorConfig, ev: EvaluationConfig, seed: int, ablation: str | None) -> str:
    """The checkpoint a cell reads: the feature ablation's, else ``pred.checkpoint``; ``{seed}`` substituted."""
    if ablation in FEATURE_ABLATIONS:
        path = ev.ablation_checkpoints.get(ablation, "")
        if not path:
            raise ValueError(
                f"ablation {ablation!r} needs evaluation.ablation_checkpoints.{ablation} (the predictor retrained "
                "without those features, from asd train-predictor's ablations)"
            )
    else:
        path = pred.checkpoint
    return path.replace("{seed}", str(seed))


def _abs(path: str) -> str:
    """A checkpoint path the cells can read from any working folder (``testbed:<name>`` stays as it is)."""
    from asd.predictor.checkpoint import TESTBED_PREFIX

    return path if (not path or path.startswith(TESTBED_PREFIX)) else str(Path(path).resolve())


def cell_predictor(
    pred: PredictorConfig | None, ev: EvaluationConfig, seed: int, ablation: str | None
) -> PredictorConfig:
    """The ``predictor`` section of one cell's config (see the module docstring); ValueError for a feature
    ablation of the prior (which reads no features) or without its checkpoint."""
    pred = pred or PredictorConfig()
    if pred.kind == "prior":
        if ablation in FEATURE_ABLATIONS:
            raise ValueError(
                f"ablation {ablation!r} retrains the predictor without some features; the prior reads none: "
                "use predictor kind mlp with evaluation.ablation_checkpoints, or drop the ablation"
            )
        return PredictorConfig(kind="prior")
    return PredictorConfig(kind="mlp", checkpoint=_abs(checkpoint_for(pred, ev, seed, ablation)))


def check(pred: Any, hierarchy, where: str) -> None:
    """ValueError unless ``pred`` answers predictions of the hierarchy's shapes ([1, S, K] and [1, K, K])."""
    K = len(hierarchy.stages)
    if not isinstance(pred, Predictor):
        raise ValueError(f"{where}: {type(pred).__name__} is not a Predictor (needs num_draws and predict)")
    r, acc = pred.predict(np.zeros((1, NUM_FEATURES), np.float32), np.zeros(1, np.int64), K)
    S = int(pred.num_draws)
    if np.shape(r) != (1, S, K) or np.shape(acc) != (1, K, K):
        raise ValueError(
            f"{where}: the predictor answers r {np.shape(r)} and accept {np.shape(acc)}; the hierarchy of "
            f"K={K} stages needs [1, {S}, {K}] and [1, {K}, {K}]"
        )


def load(sections: dict[str, Any]) -> Predictor:
    """The checked predictor of a cell's config (sections ``predictor`` and ``hierarchy``; cached per process)."""
    from asd.predictor.checkpoint import predictor_for

    cfg = sections.get("predictor")
    where = "predictor" if cfg is None or cfg.kind == "prior" else f"predictor {cfg.checkpoint}"
    pred = predictor_for(sections)
    check(pred, sections["hierarchy"], where)
    return pred
