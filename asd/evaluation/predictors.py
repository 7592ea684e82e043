"""The predictor factory seam of the evaluation (docs/evaluation.md#predictor).

``evaluation.predictor.factory`` names ``"module:function"(spec, hierarchy, seed, ablation) -> Predictor``
(asd.core.predictor's protocol). Two factories ship:

- ``prior``: ``PriorPredictor(r_prior, accept_prior)`` — no training, the same r̂ for every input;
- ``mlp_or_prior``: ``mlp`` when its checkpoint exists, else ``prior`` (the demo and pipeline configs);
- ``mlp``: the trained deep-ensemble MLP (``asd train-predictor``) through ``asd.predictor.checkpoint
  .build_predictor``, at ``checkpoint_for(spec, seed, ablation)``: ``spec.checkpoint`` with ``{seed}``
  replaced by the cell's seed (seed s evaluates the predictor trained with seed s), or for a feature ablation
  (``no_hidden``, ``no_token_stats``, ``no_text``) ``spec.ablation_checkpoints[ablation]``.

``load(spec, hierarchy, seed, ablation)`` builds one and checks it against the hierarchy before any model
runs (``check``): its stage names (when it has ``stage_names``), its prior's length, and the shapes of one
prediction. Built predictors are cached per process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asd.core.features import NUM_FEATURES
from asd.core.predictor import Predictor, PriorPredictor
from asd.evaluation.config import FEATURE_ABLATIONS, PredictorSpec
from asd.registry import import_spec

_CACHE: dict[tuple, Any] = {}


def stage_names(hierarchy) -> list[str]:
    """The hierarchy's stage models in order (what a trained predictor's ``stage_names`` must equal)."""
    return [s.model for s in hierarchy.stages]


def checkpoint_for(spec: PredictorSpec, seed: int, ablation: str | None) -> str:
    """The checkpoint a cell reads: the feature ablation's, else ``spec.checkpoint``; ``{seed}`` substituted."""
    if ablation in FEATURE_ABLATIONS:
        path = spec.ablation_checkpoints.get(ablation, "")
        if not path:
            raise ValueError(
                f"ablation {ablation!r} needs predictor.ablation_checkpoints.{ablation} (the predictor retrained "
                "without those features, from asd train-predictor's ablations)"
            )
    else:
        path = spec.checkpoint
    return path.replace("{seed}", str(seed))


def prior(spec: PredictorSpec, hierarchy, seed: int, ablation: str | None) -> Predictor:
    """``PriorPredictor``: ``spec.r_prior`` (K entries, or [] for 0.5 before the last stage), ``spec.accept_prior``."""
    if ablation in FEATURE_ABLATIONS:
        raise ValueError(
            f"ablation {ablation!r} retrains the predictor without some features; the prior reads none: "
            "use predictor.factory asd.evaluation.predictors:mlp with ablation_checkpoints, or drop the ablation"
        )
    return PriorPredictor(r_prior=tuple(spec.r_prior) or None, accept_prior=spec.accept_prior)


def mlp(spec: PredictorSpec, hierarchy, seed: int, ablation: str | None) -> Predictor:
    """The trained MLP at ``checkpoint_for(spec, seed, ablation)``, checked by the predictor package itself."""
    path = checkpoint_for(spec, seed, ablation)
    if not path:
        raise ValueError("predictor.checkpoint is empty: the mlp factory needs a checkpoint (asd train-predictor)")
    try:
        from asd.predictor.checkpoint import build_predictor
        from asd.predictor.config import PredictorConfig
    except ImportError as e:
        raise ValueError(f"predictor factory 'mlp' needs the asd.predictor package (asd train-predictor): {e}") from e
    return build_predictor(PredictorConfig(kind="mlp", checkpoint=path), stage_names(hierarchy))


def mlp_or_prior(spec: PredictorSpec, hierarchy, seed: int, ablation: str | None) -> Predictor:
    """The trained MLP when the asd.predictor package and the checkpoint exist, else the prior — for the demo and
    pipeline configs, whose predictor may not be trained yet (grid.json records which one ran)."""
    import sys

    path = checkpoint_for(spec, seed, ablation)
    try:
        from asd.predictor.checkpoint import resolve_path

        found = bool(path) and Path(resolve_path(path)).exists()
    except (ImportError, OSError, ValueError):
        found = False
    if found:
        return mlp(spec, hierarchy, seed, ablation)
    print(f"predictor: no trained checkpoint at {path or '(none)'}: using the prior", file=sys.stderr)
    return prior(spec, hierarchy, seed, ablation)


def check(pred: Any, hierarchy, where: str) -> None:
    """ValueError unless ``pred`` fits the hierarchy: stage names, prior length, the shapes of a prediction."""
    K = len(hierarchy.stages)
    names = getattr(pred, "stage_names", None)
    if names is not None and list(names) != stage_names(hierarchy):
        raise ValueError(
            f"{where}: the predictor was trained for stages {list(names)}; the hierarchy's stages are "
            f"{stage_names(hierarchy)}"
        )
    prior_r = getattr(pred, "r_prior", None)
    if prior_r is not None and len(prior_r) != K:
        raise ValueError(f"{where}: r_prior has {len(prior_r)} entries; the hierarchy has K={K} stages")
    if not isinstance(pred, Predictor):
        raise ValueError(f"{where}: {type(pred).__name__} is not a Predictor (needs num_draws and predict)")
    r, acc = pred.predict(np.zeros((1, NUM_FEATURES), np.float32), np.zeros(1, np.int64), K)
    S = int(pred.num_draws)
    if np.shape(r) != (1, S, K) or np.shape(acc) != (1, K, K):
        raise ValueError(
            f"{where}: the predictor answers r {np.shape(r)} and accept {np.shape(acc)}; the hierarchy of "
            f"K={K} stages needs [1, {S}, {K}] and [1, {K}, {K}]"
        )


def load(spec: PredictorSpec, hierarchy, seed: int, ablation: str | None) -> Predictor:
    """The checked predictor of a cell (cached per process)."""
    key = (repr(spec), tuple(stage_names(hierarchy)), seed, ablation)
    if key not in _CACHE:
        factory = import_spec(spec.factory, "predictor factory")
        pred = factory(spec, hierarchy, seed, ablation)
        check(pred, hierarchy, f"predictor ({spec.factory}, seed {seed}{', ' + ablation if ablation else ''})")
        _CACHE[key] = pred
    return _CACHE[key]
