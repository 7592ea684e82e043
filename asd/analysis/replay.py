"""Replay a run's recorded call sequence through real-shape random-weight stages, timed (docs/analysis.md#replay).

Two steps, so that the GPU machine needs neither the run folder nor h5py:

1. ``extract_calls(run, cells, max_batches)`` (here, on CPU): the calls of the chosen cells as recovered by
   ``asd.analysis.calls.recover_calls`` — per call: stage, kind, members B, longest input T, decode steps —
   a small JSON document (schema ``asd-replay-calls``);
2. ``replay(doc, stages, table)`` (on the GPU): every call of a stage that has a model in ``stages`` runs
   through ``asd.models.cuda_graph.StaticDecoder`` as the cascade would run it — a generate call is a prefill
   over [B, T] then ``steps`` decode steps at batch B; a verify call is a pass over [B, T] with the logits of
   every position (the LM head applied in row chunks, the same arithmetic as full logits) then ``steps``
   decode steps — timed with ``torch.cuda.synchronize`` + ``perf_counter`` (wall-clock). The same calls are
   priced with the cost table (``asd.analysis.calls.price_calls``); the record sets measured against
   estimated per call, per stage and in total. Calls of stages without a model (e.g. 72B, which does not fit
   one GPU beside the others) and two-model speculative calls are not replayed; their estimate is reported.

Decode steps use CUDA graphs per batch size (captured before timing) and, on CUDA, the compiled element-wise
blocks, as the cost table's decode measurements did. torch and transformers are imported inside functions.
"""

from __future__ import annotations

import fnmatch
import math
import time
from typing import Any

import numpy as np

from asd.analysis import calls as C
from asd.core.costs import CostModel

CALLS_SCHEMA = "asd-replay-calls"
REPLAY_SCHEMA = "asd-gpu-replay"
QWEN_STAGES = ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-32B")  # what fits one H200 together
DEFAULT_CELLS = (
    "*--dp-lam1--seed*",
    "*--lossless--seed*",
    "*--single-s0--seed*",
    "*--single-s1--seed*",
    "*--single-s2--seed*",
)
FIELDS = C.CALL_FIELDS


def select_cells(run, patterns: list[str], seeds: list[int] | None = None) -> list:
    """The run's cells whose id matches any glob pattern (and whose seed is in ``seeds``, when given)."""
    out = [
        c
        for c in run.cells
        if any(fnmatch.fnmatchcase(c.id, p) for p in patterns) and (seeds is None or c.seed in seeds)
    ]
    if not out:
        raise ValueError(f"no cell of {run.root} matches {patterns}" + (f" with seed in {seeds}" if seeds else ""))
    return out


def extract_calls(run, cells: list, max_batches: int | None = None) -> dict:
    """The calls of ``cells`` (their first ``max_batches`` batches each) as a JSON-ready document."""
    from asd.provenance import provenance

    out = []
    for c in cells:
        d = run.read(c)
        calls = C.recover_calls(d, speculative=c.policy == "speculative")
        keep = np.ones(len(calls), bool)
        if max_batches is not None:
            first = np.unique(calls.batch)[:max_batches]
            keep = np.isin(calls.batch, first)
        order = np.lexsort((calls.stage[keep], calls.batch[keep]))  # batch by batch, stages in order
        gamma, _ = C.gamma_of(run.attrs[c.id], run.grid)
        out.append(
            {
                "cell": c.id,
                "policy": c.policy,
                "dataset": c.dataset,
                "seed": c.seed,
                "gamma": gamma,
                "calls": {f: getattr(calls, f)[keep][order].tolist() for f in FIELDS},
            }
        )
    return {
        "schema": CALLS_SCHEMA,
        **provenance(schema_version=1),
        "run": str(run.root),
        "run_git_revision": run.grid.get("git_revision"),
        "run_config": run.grid.get("config"),
        "K": run.K,
        "stage_names": run.stage_names,
        "max_batches": max_batches,
        "cells": out,
    }


def calls_of(entry: dict) -> C.Calls:
    """One cell's calls of an ``extract_calls`` document as ``Calls`` (no per-sample membership)."""
    return C.Calls.from_columns(entry["calls"], member=np.zeros((0, 0), np.int64))


def build_stage(spec: str | dict, dtype: str, device: str):
    """A random-weight ``Qwen2ForCausalLM``: a Qwen2.5 id (asd.models.shapes) or a dict of Qwen2Config fields."""
    if isinstance(spec, str):
        from asd.profiler import build_model

        return build_model(spec, dtype, device, random_weights=True)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(Qwen2Config(**spec))
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def replay(
    doc: dict,
    stages: list[str | dict],
    table: CostModel,
    device: str = "cuda",
    dtype: str = "bfloat16",
    compile_blocks: bool | None = None,
    warmup_calls: int = 2,
    progress: bool = True,
    repeats: int = 3,
) -> dict:
    """Replay the calls of ``doc`` on ``stages`` (model k runs the calls of stage k); the record (see module).

    repeats: each call runs this many times back to back; its measured seconds are the median (a single
    timing of a call of tens of milliseconds catches the host's hiccups)."""
    import torch
    from tqdm import tqdm

    from asd.models.cuda_graph import StaticDecoder

    if doc.get("schema") != CALLS_SCHEMA:
        raise ValueError(
            f"not a call list of schema {CALLS_SCHEMA!r} (got {doc.get('schema')!r}); write one with "
            "scripts/gpu_replay.py extract"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if table.num_stages < len(stages):
        raise ValueError(f"the cost table has {table.num_stages} stages, fewer than the {len(stages)} to replay")
    cuda = device.startswith("cuda")
    compile_blocks = cuda if compile_blocks is None else compile_blocks
    S = len(stages)
    jobs: list[tuple[int, int]] = []  # (cell index, call index) to run
    cells = [calls_of(e) for e in doc["cells"]]
    for ci, c in enumerate(cells):
        for j in range(len(c)):
            if c.stage[j] < S and c.kind[j] != C.SPECULATIVE:
                jobs.append((ci, j))
    if not jobs:
        raise ValueError(f"no call of the document runs on stages 0..{S - 1}")
    need_b = [max([int(cells[ci].size[j]) for ci, j in jobs if cells[ci].stage[j] == k] or [1]) for k in range(S)]
    need_t = [
        max([int(cells[ci].in_tokens[j] + cells[ci].steps[j]) for ci, j in jobs if cells[ci].stage[j] == k] or [8])
        for k in range(S)
    ]
    t_build = time.perf_counter()
    models, decs = [], []
    for k, spec in enumerate(stages):
        m = build_stage(spec, dtype, device)
        models.append(m)
        decs.append(
            StaticDecoder(m, max_batch=need_b[k], max_len=need_t[k] + 2, use_graphs=cuda, compile_blocks=compile_blocks)
        )
    build_s = time.perf_counter() - t_build
    gen = torch.Generator(device=device).manual_seed(0)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    @torch.no_grad()
    def run_call(k: int, kind: int, B: int, T: int, steps: int) -> tuple[float, float]:
        """(seconds of the whole call, seconds of its prefill/verify pass) — wall-clock, synchronized."""
        dec, model = decs[k], models[k]
        ids = torch.randint(0, model.config.vocab_size, (B, T), device=device, generator=gen)
        sync()
        t0 = time.perf_counter()
        logits = dec.prefill(ids, [T] * B)  # [B, V] at the last position
        if kind == C.VERIFY:  # the logits of every position (chunks of rows bound the memory)
            h = dec.last_hidden
            assert h is not None
            rows = max(1, (1 << 27) // max(1, T * model.config.vocab_size))
            for part in h.split(rows, dim=0):
                model.lm_head(part).argmax(-1)
        tok = logits.argmax(-1)
        sync()
        t1 = time.perf_counter()
        for _ in range(steps):
            _, tok = dec.step(tok[:, None])
        sync()
        return time.perf_counter() - t0, t1 - t0

    # warm-up, untimed: every decode batch size (graph capture), compiles, the first calls of each stage
    t_warm = time.perf_counter()
    for k in range(S):
        bs = sorted({int(cells[ci].size[j]) for ci, j in jobs if cells[ci].stage[j] == k and cells[ci].steps[j] > 0})
        for B in bs:
            run_call(k, C.GENERATE, B, 8, 1)
        first = [(ci, j) for ci, j in jobs if cells[ci].stage[j] == k][:warmup_calls]
        for ci, j in first:
            c = cells[ci]
            run_call(k, int(c.kind[j]), int(c.size[j]), int(c.in_tokens[j]), int(c.steps[j]))
    warm_s = time.perf_counter() - t_warm
    measured = [np.full(len(c), np.nan) for c in cells]
    measured_pass = [np.full(len(c), np.nan) for c in cells]
    for ci, j in tqdm(jobs, desc="replay", unit="call", disable=not progress):
        c = cells[ci]
        shape = (int(c.stage[j]), int(c.kind[j]), int(c.size[j]), int(c.in_tokens[j]), int(c.steps[j]))
        runs = np.array([run_call(*shape) for _ in range(repeats)])  # [repeats, 2] seconds
        measured[ci][j], measured_pass[ci][j] = np.median(runs[:, 0]), np.median(runs[:, 1])
    timing = {"build_s": build_s, "warmup_s": warm_s, "repeats": repeats}
    return _record(doc, cells, measured, measured_pass, stages, table, device, dtype, compile_blocks, timing)


def reprice(doc: dict, rec: dict, table: CostModel) -> dict:
    """The replay record ``rec`` of the call list ``doc`` priced again with another cost table (same measured
    seconds; e.g. a table measured on the machine that replayed). Pure: no model runs."""
    if doc.get("schema") != CALLS_SCHEMA or rec.get("schema") != REPLAY_SCHEMA:
        raise ValueError(f"reprice needs a call list ({CALLS_SCHEMA!r}) and its replay record ({REPLAY_SCHEMA!r})")
    cells = [calls_of(e) for e in doc["cells"]]
    if len(rec["calls"]) != sum(len(c) for c in cells):
        raise ValueError(f"the record has {len(rec['calls'])} calls; the call list {sum(len(c) for c in cells)}")
    measured, measured_pass, i = [], [], 0
    for c in cells:
        part = rec["calls"][i : i + len(c)]
        i += len(c)
        measured.append(np.array([_nan(x.get("measured_s")) for x in part]))
        measured_pass.append(np.array([_nan(x.get("measured_pass_s")) for x in part]))
    timing = {k: rec.get(k) for k in ("build_s", "warmup_s", "repeats")}
    out = _record(
        doc,
        cells,
        measured,
        measured_pass,
        rec["stages"],
        table,
        rec["device"],
        rec["dtype"],
        rec["compile_blocks"],
        timing,
    )
    out["environment_of_replay"] = rec.get("environment")
    out["repriced_from"] = {"cost_table": rec.get("cost_table"), "summary": rec.get("summary")}
    return out


def _nan(x: float | None) -> float:
    return np.nan if x is None else float(x)


def _estimates(cells: list, doc: dict, table: CostModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per cell: [C] estimated seconds of every call, [C] of its prefill/verify pass alone (the table's prefill
    line + overhead; NaN for speculative calls)."""
    total, passes = [], []
    for c, e in zip(cells, doc["cells"]):
        total.append(C.price_calls(c, table, int(e.get("gamma", 4)))[0])
        p = np.full(len(c), np.nan)
        for j in range(len(c)):
            if c.kind[j] != C.SPECULATIVE and c.stage[j] < table.num_stages:
                st = table.stages[int(c.stage[j])]
                p[j] = float(st.prefill(np.float64(c.size[j] * c.in_tokens[j]))) + st.overhead_s
        passes.append(p)
    return total, passes


def _record(doc, cells, measured, measured_pass, stages, table, device, dtype, compile_blocks, timing) -> dict:
    """The replay record: measured [C] seconds (median over repeats; NaN: not replayed) and measured_pass [C]
    (the prefill/verify pass alone) per cell, against the table's estimates, per call, per stage, in total."""
    import sys

    from asd.analysis.analyze import jsonable
    from asd.provenance import provenance

    S = len(stages)
    names = [s if isinstance(s, str) else f"custom{k}" for k, s in enumerate(stages)]
    est_cells, est_pass_cells = _estimates(cells, doc, table)
    per_call, per_cell = [], []
    est_all, est_pass_all = np.concatenate(est_cells), np.concatenate(est_pass_cells)
    meas_all, meas_pass_all = np.concatenate(measured), np.concatenate(measured_pass)
    st_all = np.concatenate([c.stage for c in cells])
    kind_all = np.concatenate([c.kind for c in cells])
    for e, c, est, est_p, m, mp in zip(doc["cells"], cells, est_cells, est_pass_cells, measured, measured_pass):
        ran = np.isfinite(m)
        per_cell.append(
            {
                "cell": e["cell"],
                "calls": len(c),
                "replayed": int(ran.sum()),
                "measured_s": float(m[ran].sum()),
                "estimated_s": float(est[ran].sum()),
                "ratio": float(m[ran].sum() / est[ran].sum()) if ran.any() and est[ran].sum() > 0 else None,
                "not_replayed_estimated_s": float(est[~ran].sum()),
            }
        )
        for j in range(len(c)):
            per_call.append(
                {
                    "cell": e["cell"],
                    "batch": int(c.batch[j]),
                    "stage": int(c.stage[j]),
                    "kind": C.KIND_NAMES[int(c.kind[j])],
                    "B": int(c.size[j]),
                    "T": int(c.in_tokens[j]),
                    "steps": int(c.steps[j]),
                    "estimated_s": float(est[j]),
                    "estimated_pass_s": None if math.isnan(est_p[j]) else float(est_p[j]),
                    "measured_s": None if math.isnan(m[j]) else float(m[j]),
                    "measured_pass_s": None if math.isnan(mp[j]) else float(mp[j]),
                }
            )
    ran = np.isfinite(meas_all)
    by_stage = []
    for k in range(int(st_all.max()) + 1 if st_all.size else 0):
        sel = ran & (st_all == k)
        skipped = (~ran) & (st_all == k)
        row: dict[str, Any] = {
            "stage": k,
            "model": names[k] if k < S else table.stages[k].name,
            "replayed_calls": int(sel.sum()),
            "skipped_calls": int(skipped.sum()),
            "skipped_estimated_s": float(est_all[skipped].sum()),
        }
        if sel.any():
            r = meas_all[sel] / est_all[sel]
            row.update(
                {
                    "measured_s": float(meas_all[sel].sum()),
                    "estimated_s": float(est_all[sel].sum()),
                    "ratio_total": float(meas_all[sel].sum() / est_all[sel].sum()),
                    "ratio_median": float(np.median(r)),
                    "ratio_q1": float(np.quantile(r, 0.25)),
                    "ratio_q3": float(np.quantile(r, 0.75)),
                }
            )
            for kd in (C.GENERATE, C.VERIFY):
                s2 = sel & (kind_all == kd)
                if s2.any():
                    row[f"{C.KIND_NAMES[kd]}_ratio_total"] = float(meas_all[s2].sum() / est_all[s2].sum())
            sp = sel & np.isfinite(meas_pass_all) & np.isfinite(est_pass_all)
            if sp.any():  # where the gap is: the prefill/verify pass vs the decode steps
                dm, de = meas_all[sp] - meas_pass_all[sp], est_all[sp] - est_pass_all[sp]
                row["pass_ratio_total"] = float(meas_pass_all[sp].sum() / est_pass_all[sp].sum())
                row["decode_ratio_total"] = float(dm.sum() / de.sum()) if de.sum() > 0 else None
        by_stage.append(row)
    tot_m, tot_e = float(meas_all[ran].sum()), float(est_all[ran].sum())
    summary = {
        "replayed_calls": int(ran.sum()),
        "measured_s": tot_m,
        "estimated_s": tot_e,
        "measured_over_estimated": tot_m / tot_e if tot_e > 0 else None,
        "within_15_percent": bool(tot_e > 0 and abs(tot_m / tot_e - 1) <= 0.15),
        "not_replayed_calls": int((~ran).sum()),
        "not_replayed_estimated_s": float(est_all[~ran].sum()),
    }
    env: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda"):
        env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    return jsonable(
        {
            "schema": REPLAY_SCHEMA,
            **provenance(schema_version=1),
            "label": "replay of recorded calls on random-weight real-shape stages (timing only; outputs meaningless)",
            "device": env.get("gpu", device),
            "dtype": dtype,
            "compile_blocks": compile_blocks,
            "stages": names,
            "cost_table": [s.name for s in table.stages],
            "calls_from": doc.get("run"),
            "calls_run_git_revision": doc.get("run_git_revision"),
            **timing,
            "summary": summary,
            "by_stage": by_stage,
            "by_cell": per_cell,
            "calls": per_call,
        }
    )
