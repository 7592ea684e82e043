"""The online job step of an evaluation cell: the cascade, for real, on one window of the cell's prompts.

``online(sample_ids [B] int64, config) -> records`` (asd.jobs.steps' contract). The jobs layer calls it with
``jobs.batch_size`` = the cascade's window (``cascade.pool_size``, or ``cascade.batch_size`` when 0) ids at a
time, so one call is one cascade window, whose stage calls take up to ``cascade.batch_size`` samples each, as a
server batches the requests waiting for each model: the records carry ``latency_s`` [B, K] (each stage's
batched call, seconds), ``batch_id`` [B] and ``batch_latency_s`` [B] (the whole window's wall clock, draft to
last stop), then the
score of each output and the dataset name. Engines, predictors and cascades are built once per process; the
engines generate and score once before the first timed batch (``warm_up``).

Policy ``oracle`` reads its outcomes [B, K] (stage k's output == the final stage's, token for token) from the
merged traces of the cell's ``single`` cells (``cell.outcome_cells``, one per stage, same prompts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_CASCADES: dict[str, Any] = {}  # cell id + config → Cascade, per process
_OUTCOMES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # oracle: (paths) → (ids [N], outcome [N, K])
_WARM: set[int] = set()  # engines already warmed up in this process (by id of the engine list)


def warm_up(engines) -> None:
    """One short generation and one scoring pass per stage before anything is timed (first calls pay for
    allocations and lazy initialisation: a server measures warm)."""
    from asd.models.base import GenerationParams

    if id(engines) in _WARM:
        return
    p = GenerationParams(max_new_tokens=4)
    prompt = [[min(3, e.vocab_size - 1)] * 8 for e in engines[:1]]
    for e in engines:
        e.generate(prompt, p)
        e.score(prompt, [[min(4, e.vocab_size - 1)] * 4], p)
    _WARM.add(id(engines))


def cost_model_of(cell, K: int):
    """The measured cost table of the cell (None: the proxy), made uniform for the ``uniform_costs`` ablation."""
    if cell.cost_model is None:
        return None
    from asd.costs_io import load_cost_model

    model = load_cost_model(cell.cost_model)
    if model.num_stages != K:
        raise ValueError(f"{cell.cost_model}: the cost table has {model.num_stages} stages; the hierarchy has K={K}")
    return uniform(model) if cell.uniform_costs else model


def uniform(model):
    """The cost table with every stage priced as the final one (the ``uniform_costs`` ablation)."""
    import dataclasses

    final = model.stages[-1]
    stages = tuple(dataclasses.replace(final, name=s.name) for s in model.stages)
    return dataclasses.replace(model, stages=stages)


def build_cascade(config: dict[str, Any]):
    """The cell's Cascade (engines cached per process by asd.pipeline; the predictor of its ``predictor`` section)."""
    from asd.cascade import Cascade
    from asd.config_loader import to_dict
    from asd.evaluation import predictors
    from asd.evaluation.prompts import eos_ids
    from asd.pipeline import _engines

    cell, hier = config["cell"], config["hierarchy"]
    key = json.dumps({k: to_dict(v) for k, v in config.items() if k != "jobs"}, sort_keys=True, default=str)
    if key not in _CASCADES:
        engines, tok = _engines(hier)
        warm_up(engines)
        K = len(engines)
        cost = cost_model_of(cell, K)
        _CASCADES[key] = Cascade(
            engines,
            config["cascade"],
            config["policy"],
            predictor=predictors.load(config),
            cost_model=cost,
            tokenizer=tok,
            eos_token_ids=eos_ids(tok, cell.source == "testbed"),
            stage_sizes=[1.0] * K if (cell.uniform_costs and cost is None) else None,
        )
    return _CASCADES[key]


def oracle_outcome(paths: list[str], sample_ids: np.ndarray) -> np.ndarray:
    """[B, K] bool: the single cells' outputs (stage k alone) equal to the final stage's, token for token."""
    from asd.traces import read_traces

    key = tuple(paths)
    if key not in _OUTCOMES:
        toks = []
        ids = None
        for p in paths:
            t = read_traces(p, fields=["sample_id", "tokens"])
            if ids is not None and not np.array_equal(ids, t.data["sample_id"]):
                raise ValueError(f"{p}: other sample ids than {paths[0]}; the oracle needs the same prompts")
            ids = t.data["sample_id"]
            toks.append(t.data["tokens"])
        assert ids is not None
        K = len(toks)
        out = np.array([[np.array_equal(toks[k][n], toks[K - 1][n]) for k in range(K)] for n in range(len(ids))])
        _OUTCOMES[key] = (ids, out.reshape(len(ids), K))
    ids, out = _OUTCOMES[key]
    pos = np.searchsorted(ids, sample_ids)
    if np.any(pos >= len(ids)) or not np.array_equal(ids[np.minimum(pos, len(ids) - 1)], sample_ids):
        raise ValueError(f"{paths[0]}: the single cells lack some of samples {sample_ids[:5].tolist()}…")
    return out[pos]


def online(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Records of one cascade window over the cell's prompts ``sample_ids`` [B] (see the module docstring)."""
    from asd.evaluation.prompts import cell_prompts

    cell = config["cell"]
    ids = np.asarray(sample_ids, dtype=np.int64)
    casc = build_cascade(config)
    room = min(e.max_context for e in casc.engines) - casc.cfg.max_new_tokens
    room = min(room, cell.max_prompt_tokens or room)
    pr = cell_prompts(cell, ids, config.get("data"), config.get("sandbox"), casc.tokenizer, room)
    outcome = None
    if cell.policy == "oracle":  # the single cells' traces, relative to the run folder (<run>/cells/<this cell>)
        root = Path(config["jobs"].output_dir).parent.parent
        outcome = oracle_outcome([str(root / p) for p in cell.outcome_cells], ids)
    rec = casc.run(pr.ids, sample_ids=ids, outcome=outcome)
    rec["score"] = pr.score([str(t) for t in rec["text"]])
    rec["dataset"] = np.array([cell.dataset] * len(ids), dtype=object)
    rec["feature_names"] = list(casc.feature_names)
    return rec
