"""``--mode replay``: a policy evaluated counterfactually from full per-stage traces (docs/evaluation.md#replay).

``replay(sample_ids [B] int64, config) -> records`` is the replay job step: it follows the cascade's own loop
(``asd.cascade.Cascade._run_window``: first stage, then decide → move until every sample stopped, the lowest
waiting stage first, in calls of ``cascade.batch_size``, with the same re-planning rule and the same
``asd.core.decision.Decider``) but takes each stage's response from the
file instead of running a model. What a move j → m records:

- the response y_m and |y_m| from the file (greedy: M_m's output on any route is its own, docs/cascade.md);
- ``accepted_len`` = the file's a_{j,m} (tokens of y_j that M_m accepts);
- stage m's features: the file's (recorded on the route … → m−1 → m) with ``accept_ratio_prev`` set to
  a_{j,m} / max(|y_j|, 1), the value the cascade computes after the move. Two columns depend on the route
  into m: the pooled hidden state (the verification pass pools over prompt + the draft it verified) and
  ``mean_logprob`` (the cascade records, for M_m's token at the first mismatch, the log-probability of the
  rejected draft token). After a skip (j < m − 1), or at a first stage above 0, those columns are the
  adjacent route's: replay is exact for predictors that do not read them, close otherwise
  (tests/evaluation/test_replay.py checks which columns agree);
- ``latency_s``: an estimate from the file's per-sample shares — the first stage's generation share, then
  per move the verification share plus (1 − accepted fraction) of M_m's generation share — summed over the
  samples of each batched call (online, ``latency_s`` is that call's wall time); ``batch_latency_s`` = the sum
  of a batch's calls.

The sample of seed s is the seeded permutation (``asd.evaluation.prompts.draw``) of the file's rows of the
cell's task, so every policy of a seed replays the same rows. Policy ``oracle`` reads its outcomes from the
file (``agree_final``); ``speculative`` returns y_{K−1} (its ``draft_len[0]`` and ``accepted_len[K−1]`` are
the file's |y_0| and a_{0,K−1}, not the token-level drafting counts the online run records). The merged
traces carry ``mode = "replay"`` (a file attribute the driver sets). ``random`` draws with the same seeds as
online, but per batch of replayed rows, so its draws match online only when the batches hold the same samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from asd.cascade import NOT_RUN, BatchState
from asd.core.costs import recorded_move_s
from asd.core.features import FEATURE_NAMES
from asd.core.routing import first_stage, split_calls, walk_window

_FILES: dict[str, Any] = {}
_DECIDERS: dict[str, Any] = {}
_TOKENIZERS: dict[str, Any] = {}
_AP = FEATURE_NAMES.index("accept_ratio_prev")


def full_traces(path: str):
    """The checked full-trace file (``asd.evaluation.fulltrace.read``), cached per process."""
    from asd.evaluation import fulltrace

    if path not in _FILES:
        _FILES[path] = fulltrace.read(path)
    return _FILES[path]


def stage_params(hierarchy, ft=None) -> np.ndarray:
    """[K] parameter counts for the proxy costs: the file's ``stage_params``, else from the stages' shapes."""
    if ft is not None and ft.attrs.get("stage_params"):
        return np.asarray(ft.attrs["stage_params"], np.float64)
    from asd.models.loading import _local_dir
    from asd.models.shapes import known_shape, param_count

    out = []
    for st in hierarchy.stages:
        shape = known_shape(st.model)
        if shape is None:
            d = _local_dir(st.model)
            if d is None or not (d / "config.json").is_file():
                raise ValueError(
                    f"stage {st.name!r} ({st.model}): no known shape or local config.json to count its parameters "
                    "for the proxy costs; give evaluation.cost_model (a measured table) or replay a file with "
                    "stage_params"
                )
            shape = json.loads((d / "config.json").read_text())
        out.append(float(param_count(shape)))
    return np.asarray(out)


def check_file(ft, hierarchy) -> None:
    """ValueError unless the file's stages are the hierarchy's (count and names)."""
    names = [s.model for s in hierarchy.stages]
    K = len(names)
    if ft.K != K:
        raise ValueError(f"{ft.path}: {ft.K} stages; the hierarchy has K={K}")
    got = ft.attrs.get("stage_names")
    if got is not None and list(got) != names:
        raise ValueError(f"{ft.path}: traces of stages {list(got)}; the hierarchy's stages are {names}")


def cell_rows(ft, task: str, dataset: str, seed: int, count: int) -> np.ndarray:
    """[count] int64 rows of the file for sample ids 0..count-1 of (task, seed)."""
    from asd.evaluation.prompts import draw

    rows = np.flatnonzero(ft.data["task"] == task)
    if rows.size < count:
        raise ValueError(f"{ft.path}: {rows.size} rows of task {task!r}; the grid asks for {count} samples")
    return rows[draw(rows.size, dataset, seed, count)]


def _decider(config: dict[str, Any], ft):
    from asd.config_loader import to_dict
    from asd.core.decision import Decider
    from asd.evaluation import predictors
    from asd.evaluation.step import cost_model_of

    key = json.dumps({k: to_dict(v) for k, v in config.items() if k != "jobs"}, sort_keys=True, default=str)
    if key not in _DECIDERS:
        cell, hier, pol = config["cell"], config["hierarchy"], config["policy"]
        K = ft.K
        cost = cost_model_of(cell, K)
        sizes = np.ones(K) if (cell.uniform_costs and cost is None) else stage_params(hier, ft)
        pred = predictors.load(config)
        _DECIDERS[key] = Decider(pol, K, sizes, pred, cost)
    return _DECIDERS[key]


def simulate(
    ft, rows: np.ndarray, ids: np.ndarray, decider, outcome: np.ndarray | None = None, batch_size: int | None = None
) -> dict:
    """The window's trace record (asd.cascade's fields) when the cascade's loop runs on the file's rows ``rows``;
    ``batch_size``: the most samples of one stage call, as ``cascade.batch_size`` (None: one call per stage)."""
    policy, K = decider.policy, decider.K
    B = len(rows)
    st = BatchState.start([[] for _ in range(B)], ids, K, first_stage(policy, K))
    rec = st.record
    rec["prompt_len"][:] = ft.data["prompt_len"][rows]
    feats = ft.data["features"][rows]  # [B, K, F]
    dl = ft.data["draft_len"][rows].astype(np.int64)  # [B, K]
    acc = ft.data["accepted_len"][rows]  # [B, K, K]
    gl = ft.data.get("gen_latency_s", np.zeros((len(ft), K)))[rows]  # [B, K] seconds per sample
    vl = np.nan_to_num(ft.data.get("verify_latency_s", np.zeros((len(ft), K, K)))[rows])  # [B, K, K]
    ys = [ft.tokens(k)[rows] for k in range(K)]
    spent = 0.0  # seconds of the batch's calls (estimated)

    def take(idx: np.ndarray, m: int, ap: np.ndarray) -> None:
        for i in idx.tolist():
            st.responses[i] = np.asarray(ys[m][i], np.int64)
        rec["ran"][idx, m] = True
        rec["draft_len"][idx, m] = dl[idx, m]
        f = feats[idx, m].copy()
        f[:, _AP] = ap
        rec["features"][idx, m] = f

    k0 = int(st.stage[0])
    everyone = np.arange(B)
    if policy.name == "speculative":  # stage 0 drafts for the final stage: the output is y_{K−1}
        take(everyone, K - 1, np.ones(B))
        rec["ran"][:, 0] = True
        rec["draft_len"][:, 0] = dl[:, 0]
        rec["decision"][:, 0] = K - 1
        rec["accepted_len"][:, K - 1] = acc[:, 0, K - 1]
        st.stage[:] = K - 1
    else:
        take(everyone, k0, np.ones(B))  # the first stage: no previous draft (the cascade records 1.0)
    k_first = K - 1 if policy.name == "speculative" else k0
    for idx in split_calls(everyone, batch_size):
        secs = float(gl[idx, k_first].sum())
        rec["latency_s"][idx, k_first] = secs
        spent += secs

    def move(idx: np.ndarray, m: int) -> None:
        nonlocal spent
        j = st.stage[idx]
        a = acc[idx, j, m]
        take(idx, m, a / np.maximum(dl[idx, j], 1))
        rec["accepted_len"][idx, m] = a
        secs = float(recorded_move_s(vl[idx, j, m], gl[idx, m], a, dl[idx, j]).sum())
        rec["latency_s"][idx, m] = secs
        spent += secs

    walk_window(
        st.stage,
        rec["decision"],
        policy.name,
        lambda rows: decider.decide(
            rec["features"], rec["prompt_len"], st.responses, rows, st.stage[rows], ids, rec["predictions"], outcome
        ),
        move,
        batch_size,
    )
    rec["final_stage"] = np.array([max(np.flatnonzero(r)) for r in rec["ran"]], np.int8)
    rec["tokens"] = [r.astype(np.int32) for r in st.responses]
    rec["batch_id"] = np.full(B, ids[0] if B else -1, np.int64)
    rec["batch_latency_s"] = np.full(B, spent)
    assert not np.any((rec["decision"] == NOT_RUN) & rec["ran"]), "a stage ran without a decision"
    return rec


def _tokenizer(hierarchy):
    from asd.models.loading import load_tokenizer

    key = hierarchy.name + "|" + str(hierarchy.tokenizer) + "|" + hierarchy.stages[0].model
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(hierarchy)
    return _TOKENIZERS[key]


def replay(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Records of one window of the cell's samples ``sample_ids`` [B], replayed (see the module docstring)."""
    cell, hier, job = config["cell"], config["hierarchy"], config["jobs"]
    ft = full_traces(str(Path(cell.replay_data)))
    check_file(ft, hier)
    ids = np.asarray(sample_ids, np.int64)
    rows = cell_rows(ft, cell.task, cell.dataset, cell.seed, job.num_samples)[ids]
    decider = _decider(config, ft)
    outcome = ft.data["agree_final"][rows].astype(bool) if cell.policy == "oracle" else None
    rec = simulate(ft, rows, ids, decider, outcome, config["cascade"].batch_size)
    tok = _tokenizer(hier)
    rec["text"] = [tok.decode(t.tolist(), skip_special_tokens=True) for t in rec["tokens"]]
    rec["score"] = ft.data["score"][rows, rec["final_stage"].astype(np.int64)].astype(np.float32)
    rec["dataset"] = np.array([cell.dataset] * len(ids), dtype=object)
    rec["feature_names"] = list(FEATURE_NAMES)
    return rec
