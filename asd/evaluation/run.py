"""``asd evaluate``: check the whole grid, run its cells as arrays through the jobs layer, write grid.json.

The run folder (``jobs.output_dir``; docs/evaluation.md#the-run-folder)::

    evaluation.json            fingerprint, mode, resolved config, provenance (written once)
    grid.json                  the cells (asd-eval-grid schema), wall time, CPU/GPU-hours
    configs/<cell>.yaml        each cell's run config (sections hierarchy, cascade, policy, jobs, cell, …)
    cells/<cell>/              each cell's jobs-layer run folder: run.json, shards/, traces.h5 (merged)
    timing/<cell>/shard-*.jsonl  wall time of every array task that ran a shard (all attempts)
    submitit/<utc>-wave<w>/    submitit's pickles and logs

Steps: ``load_plan`` reads the config (and applies ``--stand-in`` / overrides), expands the cells
(``asd.evaluation.grid``) and ``validate``s everything a cell will read — predictors, cost table, datasets,
prompt lengths, the replay file, the backend's abilities — before any model runs; ``prepare_root`` refuses
a folder holding another evaluation. ``run_grid`` then submits wave 1 (every cell without dependencies) as
one submitit array of (cell, shard) tasks, shows progress (samples, rate, ETA), merges each cell
(in worker processes when there are many), writes the configs of wave 2 (random: the dp cell's stop
histogram; oracle: its single cells' outputs), submits and merges those, and writes grid.json.
A rerun with the same config skips every done shard and merged cell.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asd.config_loader import to_dict
from asd.evaluation.config import TESTBED_LEVELS, CellConfig, EvaluationConfig
from asd.evaluation.grid import Cell, expand, lam_json

GRID_SCHEMA = "asd-eval-grid"
GRID_SCHEMA_VERSION = 1
RUN_RECORD = "evaluation.json"
GRID_FILE = "grid.json"
STEPS = {"online": "asd.evaluation.step:online", "replay": "asd.evaluation.replay:replay"}
OWN = {RUN_RECORD, GRID_FILE, "configs", "cells", "timing", "submitit", "summary.json"}


@dataclass
class GridPlan:
    """A loaded, expanded and checked evaluation: what ``run_grid`` runs."""

    config_path: str
    sections: dict[str, Any]  # the config's sections after overrides (hierarchy: the stand-in's, if any)
    ev: EvaluationConfig
    mode: str
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return Path(self.sections["jobs"].output_dir)

    @property
    def K(self) -> int:
        return self.sections["hierarchy"].num_stages

    @property
    def label(self) -> str | None:
        return self.ev.label

    def config_file(self, cell: Cell) -> Path:
        return self.root / "configs" / f"{cell.id}.yaml"

    def cell_dir(self, cell: Cell) -> Path:
        return self.root / "cells" / cell.id


def _abs(path: str | None, base: Path) -> str | None:
    """A path of the config made absolute: relative to the working folder if it exists there, else to ``base``."""
    if path is None or not path:
        return path
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p.resolve())
    return str((base / p).resolve())


def load_plan(
    config_path: str | Path,
    mode: str = "online",
    stand_in: bool = False,
    output_dir: str | None = None,
    executor: str | None = None,
    data_dir: str | None = None,
    replay_data: str | None = None,
) -> GridPlan:
    """Read the config, apply the overrides, expand the grid (nothing is checked against files yet)."""
    from asd.jobs.plan import JobConfig
    from asd.run_config import load_config, load_section

    if mode not in STEPS:
        raise ValueError(f"mode: unknown {mode!r}; valid: {', '.join(STEPS)}")
    sections = load_config(config_path)
    for need in ("evaluation", "hierarchy"):
        if need not in sections:
            raise ValueError(f"{config_path}: missing section {need!r} (docs/evaluation.md shows a complete config)")
    ev: EvaluationConfig = sections["evaluation"]
    job = sections.get("jobs") or JobConfig(output_dir="runs/evaluation")
    over: dict[str, Any] = {}
    if output_dir:
        over["output_dir"] = output_dir
    if executor:
        over["executor"] = executor
    sections["jobs"] = dataclasses.replace(job, **over) if over else job
    here = Path.cwd()
    if stand_in:
        st = ev.stand_in
        if st is None:
            raise ValueError(f"{config_path}: --stand-in needs an evaluation.stand_in section (docs/evaluation.md)")
        sections["hierarchy"] = load_section(_abs(st.hierarchy_from, here) or st.hierarchy_from, "hierarchy")
        if st.shards:
            sections["jobs"] = dataclasses.replace(sections["jobs"], shards=st.shards)
        ev = dataclasses.replace(
            ev,
            samples=st.samples or ev.samples,
            seeds=st.seeds if st.seeds is not None else ev.seeds,
            lambdas=st.lambdas if st.lambdas is not None else ev.lambdas,
            ablations=st.ablations if st.ablations is not None else ev.ablations,
            truncate_prompts=st.truncate_prompts,
            label="plumbing",
        )
    if replay_data:
        ev = dataclasses.replace(ev, replay_data=replay_data)
    if data_dir:
        from asd.data.config import DataConfig

        sections["data"] = dataclasses.replace(sections.get("data") or DataConfig(), data_dir=data_dir)
    ev = dataclasses.replace(ev, cost_model=_abs(ev.cost_model, here), replay_data=_abs(ev.replay_data, here))
    if "data" in sections:
        sections["data"] = dataclasses.replace(sections["data"], data_dir=_abs(sections["data"].data_dir, here))
    if mode == "replay" and not ev.replay_data:
        raise ValueError("--mode replay needs the full per-stage traces: evaluation.replay_data or --replay-data")
    if mode == "replay" and ev.levels != list(TESTBED_LEVELS):
        raise ValueError("evaluation.levels: replay draws the traces' rows, of every level; leave it out")
    sections["evaluation"] = ev
    cells, notes = expand(ev, sections["hierarchy"].num_stages, mode)
    return GridPlan(str(Path(config_path).resolve()), sections, ev, mode, cells, notes)


# ----------------------------------------------------------------------------- validation


def max_new_tokens(plan: GridPlan, task: str) -> int:
    """The generation budget of a task's cells: the cascade section's (testbed) or the data section's."""
    from asd.cascade import CascadeConfig

    base = plan.sections.get("cascade") or CascadeConfig()
    n = base.max_new_tokens
    if plan.ev.source == "benchmarks":
        from asd.data.config import DataConfig

        n = (plan.sections.get("data") or DataConfig()).task(task).max_new_tokens
    cap = plan.ev.stand_in.max_new_tokens if (plan.ev.label == "plumbing" and plan.ev.stand_in) else None
    return min(n, cap) if cap else n


def prompt_cap(plan: GridPlan) -> int | None:
    """The stand-in's cap on prompt tokens (plumbing runs only), else None."""
    st = plan.ev.stand_in
    return st.max_prompt_tokens if (plan.ev.label == "plumbing" and st is not None) else None


def validate(plan: GridPlan) -> dict[str, Any]:
    """Check everything the cells will read, before any model runs; returns facts for grid.json.

    ValueError naming the field or file: the backend cannot run a listed policy; a predictor that does not
    fit the hierarchy (stage names, K, the shapes of a prediction) or whose checkpoint is missing; a cost
    table of another K; a dataset not prepared or too small; a prompt too long for the context; a replay file
    of other stages, features or too few rows.
    """
    from asd.evaluation import predictors

    ev, hier, K = plan.ev, plan.sections["hierarchy"], plan.K
    facts: dict[str, Any] = {}
    names = {c.policy for c in plan.cells}
    sampled = any(c.temperature > 0 for c in plan.cells)
    if hier.backend == "vllm" and plan.mode == "online" and ("speculative" in names or sampled):
        raise ValueError(
            "hierarchy.backend vllm cannot teacher-force appended tokens or return distributions: policy "
            "'speculative' and the 'sampling' ablation need backend hf (remove them from evaluation.policies / "
            "ablations, or use backend hf)"
        )
    # predictors: every (seed, ablation) a cell will load
    used: dict[tuple, str] = {}
    for c in plan.cells:
        key = (c.seed, c.ablation)
        if key not in used and c.policy != "confidence":  # every other policy asks the predictor
            cfg = predictors.cell_predictor(plan.sections.get("predictor"), ev, c.seed, c.ablation)
            used[key] = type(predictors.load({"predictor": cfg, "hierarchy": hier})).__name__
    pred = plan.sections.get("predictor")
    facts["predictor"] = {
        "kind": pred.kind if pred is not None else "prior",
        "checkpoint": (pred.checkpoint or None) if pred is not None else None,
        "used": sorted(set(used.values())),
    }
    # cost table
    facts["cost_model"] = None
    if ev.cost_model:
        from asd.costs_io import load_cost_model

        model = load_cost_model(ev.cost_model)
        if model.num_stages != K:
            raise ValueError(f"{ev.cost_model}: the cost table has {model.num_stages} stages; the hierarchy has K={K}")
        facts["cost_model"] = model.to_dict()
    if plan.mode == "replay":
        _validate_replay(plan)
    elif ev.source == "benchmarks":
        _validate_benchmarks(plan)
    return facts


def _validate_replay(plan: GridPlan) -> None:
    from asd.evaluation.replay import cell_rows, check_file, full_traces, stage_params

    ft = full_traces(str(plan.ev.replay_data))
    check_file(ft, plan.sections["hierarchy"])
    for task in plan.ev.datasets:
        for seed in plan.ev.seeds:
            cell_rows(ft, task, plan.ev.dataset_name(task), seed, plan.ev.samples)
    if not plan.ev.cost_model:
        stage_params(plan.sections["hierarchy"], ft)


def _validate_benchmarks(plan: GridPlan) -> None:
    from asd.data.config import DataConfig
    from asd.data.prompts import build_prompt
    from asd.evaluation.prompts import benchmark_items, draw, fit, item_id
    from asd.models.loading import load_tokenizer

    ev, hier = plan.ev, plan.sections["hierarchy"]
    data = plan.sections.get("data") or DataConfig()
    tok = load_tokenizer(hier)
    ctx = min(s.max_model_len for s in hier.stages)
    for task in ev.datasets:
        items, pool = benchmark_items(task, data, ev.heldout_filter)
        room = ctx - max_new_tokens(plan, task)
        room = min(room, prompt_cap(plan) or room)
        if room < 1:
            raise ValueError(f"{task}: max_new_tokens {max_new_tokens(plan, task)} leaves no room in the context {ctx}")
        for seed in ev.seeds:
            for i, j in enumerate(draw(len(items), task, seed, ev.samples).tolist()):
                try:
                    text = build_prompt(task, items[j], data, pool=pool, tokenizer=tok).text
                except ValueError as e:
                    raise ValueError(f"{task} seed {seed} sample {i} ({item_id(items[j])}): its prompt: {e}") from e
                fit(
                    tok.encode(text, add_special_tokens=False),
                    room,
                    ev.truncate_prompts,
                    f"{task} sample {i} ({item_id(items[j])})",
                )


# ----------------------------------------------------------------------------- the run folder


def fingerprint(plan: GridPlan) -> str:
    """16 hex digits of what decides the grid's data (execution settings and the folder's path left out)."""
    from asd.jobs.plan import EXECUTION_FIELDS

    d = {name: to_dict(sec) for name, sec in plan.sections.items()}
    d["jobs"] = {k: v for k, v in d["jobs"].items() if k not in EXECUTION_FIELDS}
    d["mode"] = plan.mode
    text = json.dumps(d, sort_keys=True, default=lambda x: "inf" if x == math.inf else str(x))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_root(plan: GridPlan) -> dict:
    """Create the run folder or check that it holds this evaluation (ValueError otherwise; nothing touched)."""
    from asd.provenance import provenance

    root = plan.root
    fp = fingerprint(plan)
    rec_path = root / RUN_RECORD
    if rec_path.is_file():
        rec = json.loads(rec_path.read_text())
        if rec.get("fingerprint") != fp:
            raise ValueError(
                f"{root} holds another evaluation (config {rec.get('config_path')}, mode {rec.get('mode')}, "
                f"fingerprint {rec.get('fingerprint')}); this one's is {fp}. Choose another jobs.output_dir "
                "(--output-dir) or delete that folder; nothing was overwritten"
            )
        return rec
    if root.exists():
        foreign = sorted(p.name for p in root.iterdir() if p.name not in OWN)
        if foreign or (root / "cells").exists():
            raise ValueError(
                f"{root} is not empty and has no {RUN_RECORD}: it holds {foreign[:5] or ['cells/']}; choose "
                "another jobs.output_dir (--output-dir); nothing was overwritten"
            )
    root.mkdir(parents=True, exist_ok=True)
    rec = provenance(
        config={k: to_dict(v) for k, v in plan.sections.items()},
        schema_version=GRID_SCHEMA_VERSION,
        fingerprint=fp,
        mode=plan.mode,
        label=plan.label,
        config_path=plan.config_path,
    )
    _write_json(rec_path, rec)
    return rec


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=lambda x: "inf" if x == math.inf else str(x)) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- cell configs


def policy_of(cell: Cell, histogram: list[float] | None = None):
    """The cascade's PolicyConfig of a cell (lossless = dp at λ = ∞)."""
    from asd.core.dp import PolicyConfig

    name = "dp" if cell.policy == "lossless" else cell.policy
    kw: dict[str, Any] = {"name": name, "seed": cell.seed, "skips": cell.skips, "kappa": cell.kappa}
    if cell.lam is not None:
        kw["lam"] = cell.lam
    if cell.stage is not None:
        kw["stage"] = cell.stage
    if cell.tau is not None:
        kw["tau"] = cell.tau
    if histogram is not None:
        kw["histogram"] = histogram
    if cell.start:
        kw["start"] = cell.start
    return PolicyConfig(**kw)


def cell_sections(plan: GridPlan, cell: Cell, histogram: list[float] | None = None) -> dict[str, Any]:
    """The sections of one cell's run config."""
    from asd.cascade import CascadeConfig
    from asd.evaluation import predictors
    from asd.jobs.plan import JobConfig

    ev, mode = plan.ev, plan.mode
    base = plan.sections.get("cascade") or CascadeConfig()
    cascade = dataclasses.replace(
        base,
        max_new_tokens=max_new_tokens(plan, cell.task),
        temperature=cell.temperature,
        gamma=ev.speculative_gamma if cell.policy == "speculative" else base.gamma,
        seed=cell.seed,
    )
    job: JobConfig = plan.sections["jobs"]
    jobs = dataclasses.replace(
        job,
        output_dir=str(plan.cell_dir(cell).resolve()),
        step=STEPS[mode],
        evaluate_step=None,
        num_samples=ev.samples,
        seed=cell.seed,
        shards=min(job.shards, ev.samples),
        batch_size=cascade.window,  # one step call = one window of the cascade (docs/cascade.md)
        step_options={},
    )
    cfg = CellConfig(
        id=cell.id,
        dataset=cell.dataset,
        task=cell.task,
        source=ev.source,
        seed=cell.seed,
        policy=cell.policy,
        ablation=cell.ablation,
        mode=mode,  # type: ignore[arg-type]
        label=plan.label,
        cost_model=ev.cost_model,
        uniform_costs=cell.uniform_costs,
        outcome_cells=[f"cells/{c}/traces.h5" for c in cell.outcome_from],
        replay_data=ev.replay_data if mode == "replay" else None,
        truncate_prompts=ev.truncate_prompts,
        max_prompt_tokens=prompt_cap(plan),
        heldout_filter=ev.heldout_filter,
        levels=list(ev.levels),
    )
    out = {
        "hierarchy": plan.sections["hierarchy"],
        "cascade": cascade,
        "policy": policy_of(cell, histogram),
        "predictor": predictors.cell_predictor(plan.sections.get("predictor"), ev, cell.seed, cell.ablation),
        "jobs": jobs,
        "cell": cfg,
    }
    if ev.source == "benchmarks" and mode == "online":
        from asd.data.config import DataConfig
        from asd.eval.sandbox import SandboxConfig

        out["data"] = plan.sections.get("data") or DataConfig()
        out["sandbox"] = plan.sections.get("sandbox") or SandboxConfig()
    return out


def write_cell_config(plan: GridPlan, cell: Cell, histogram: list[float] | None = None) -> Path:
    """Write ``configs/<cell>.yaml`` and prepare the cell's jobs-layer folder (refuses another run's)."""
    import yaml

    from asd.jobs.plan import prepare_output_dir
    from asd.run_config import load_config

    path = plan.config_file(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({k: to_dict(v) for k, v in cell_sections(plan, cell, histogram).items()}, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    prepare_output_dir(load_config(path), path)
    return path


# ----------------------------------------------------------------------------- running


@dataclass
class Item:
    """One array-task item: shard ``index`` of a cell."""

    cell: Cell
    config: Path
    index: int
    samples: int
    ids: np.ndarray
    path: Path  # the shard file
    fp: str  # the cell run's fingerprint


def _items(plan: GridPlan, cells: list[Cell]) -> list[Item]:
    from asd.jobs.plan import ShardPlan
    from asd.jobs.plan import fingerprint as run_fp
    from asd.run_config import load_config

    out = []
    for c in cells:
        cfg = plan.config_file(c)
        sec = load_config(cfg)
        sp = ShardPlan(sec["jobs"])
        fp = run_fp(sec)
        for i in range(len(sp)):
            ids = sp.sample_ids(i)
            out.append(Item(c, cfg, i, len(ids), ids, sp.layout.shard(i), fp))
    return out


def _submit(plan: GridPlan, items: list[Item], wave: int):
    """Submit the pending items as one submitit array; returns the jobs."""
    import dataclasses as dc

    from asd.evaluation.submit import GridTask
    from asd.jobs.executor import make_executor
    from asd.jobs.plan import gpus_per_task

    job = plan.sections["jobs"]
    gpus = gpus_per_task(job, plan.sections)
    cpus = job.cpus_per_task
    if job.executor == "slurm":
        groups = [[it] for it in items]
    else:  # a few local processes (at most one per CPU core), each running its share (models loaded once)
        cores = os.cpu_count() or 1
        n = max(1, min(job.array_parallelism, cores, len(items)))
        groups = [items[g::n] for g in range(n)]
        cpus = max(1, min(cpus, cores // n))  # threads per process: no more threads than cores in all
    per_task = max(len(g) for g in groups)
    limits = dc.replace(job, timeout_min=job.timeout_min * per_task) if job.executor == "local" else job
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = plan.root / "submitit" / f"{stamp}-{os.getpid()}-wave{wave}"
    ex = make_executor(limits, plan.sections, folder, f"asd-eval-{plan.root.name}-w{wave}", gpus=gpus)
    args = [[(str(it.config), it.index) for it in g] for g in groups]
    return ex.map_array(GridTask(), args, [cpus] * len(groups), [gpus] * len(groups))


def _wait(jobs: list, items: list[Item], desc: str, progress: bool, poll_s: float = 2.0) -> list[str]:
    """Wait for the array, showing samples done (rate, ETA); returns the failures' messages."""
    from tqdm import tqdm

    from asd.jobs.shard import shard_state

    total = sum(it.samples for it in items)
    done: set[int] = set()
    bar = tqdm(total=total, desc=desc, unit="sample", disable=not progress, dynamic_ncols=True, smoothing=0.1)
    shown = 0
    while True:
        finished = all(j.done() for j in jobs)
        rows = 0
        for k, it in enumerate(items):
            if k in done:
                rows += it.samples
                continue
            try:
                state, n = shard_state(it.path, it.ids, it.fp, peek=True)
            except (OSError, ValueError):
                state, n = "partial", 0
            if state == "done":
                done.add(k)
                n = it.samples
            rows += n
        if rows > shown:
            bar.update(rows - shown)
            shown = rows
        if finished:
            break
        time.sleep(poll_s)
    bar.close()
    failures = []
    for j in jobs:
        try:
            j.result()
        except Exception as e:  # a task's failure: reported, the others' work is kept (a rerun resumes)
            failures.append(f"job {j.job_id}: {_last_error(str(e))}")
    return failures


def _last_error(text: str) -> str:
    """The exception line of a task's traceback (submitit's message holds the whole stderr)."""
    import re

    lines = [ln.strip() for ln in text.strip().splitlines()]
    hits = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", ln)]
    return (hits[-1] if hits else (lines[0] if lines else "unknown failure"))[:300]


def merge_cell(plan: GridPlan, cell: Cell, facts: dict) -> Path | None:
    """Merge a cell's done shards into ``cells/<cell>/traces.h5`` (with mode, cost model, cell attributes)."""
    import h5py

    from asd.jobs.merge import merge_files
    from asd.jobs.plan import ShardPlan
    from asd.jobs.plan import fingerprint as run_fp
    from asd.jobs.shard import shard_state
    from asd.run_config import load_config
    from asd.traces import SCHEMA_VERSION

    sec = load_config(plan.config_file(cell))
    sp = ShardPlan(sec["jobs"])
    fp = run_fp(sec)
    out = sp.layout.merged
    if out.is_file():
        try:
            with h5py.File(out, "r") as f:
                a = f.attrs
                if bool(a.get("complete")) and a.get("run_fingerprint") == fp and a.get("cell") == cell.id:
                    return out
        except OSError:
            pass
    paths = []
    for i in range(len(sp)):
        p = sp.layout.shard(i)
        state, _ = shard_state(p, sp.sample_ids(i), fp)
        if state != "done":
            return None
        paths.append(p)
    attrs = {
        "run_fingerprint": fp,
        "phase": "generate",
        "schema_version": SCHEMA_VERSION,
        "mode": plan.mode,
        "cost_model": priced_by(facts.get("cost_model"), cell),
        "cell": cell.id,
        "policy": cell.policy,
        "ablation": cell.ablation,
        "label": plan.label,
        "upper_bound": cell.upper_bound,
    }
    merge_files(paths, out, expected_ids=np.arange(plan.ev.samples, dtype=np.int64), attrs=attrs)
    return out


def merge_cells(plan: GridPlan, cells: list[Cell], facts: dict, desc: str, progress: bool) -> set[str]:
    """Merge cells (``merge_cell``), in worker processes when there are many; returns the ids merged.

    Each cell writes only its own ``traces.h5``, so cells merge independently: a grid of a thousand cells
    merges on a many-core host in seconds instead of minutes. Progress shows cells (rate, ETA).
    """
    from tqdm import tqdm

    workers = min(len(cells) // MERGES_PER_WORKER, os.cpu_count() or 1, MAX_MERGE_WORKERS)
    with tqdm(total=len(cells), desc=desc, unit="cell", disable=not progress, dynamic_ncols=True) as bar:
        if workers <= 1:
            return _tally(cells, (merge_cell(plan, c, facts) is not None for c in cells), bar)
        import concurrent.futures as cf
        import multiprocessing as mp

        # spawn: the parent may hold threads (submitit, tqdm), which a forked child would inherit half-copied;
        # the plan and facts go to each worker once, not with every cell
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, ctx, initializer=_merge_worker_init, initargs=(plan, facts)) as pool:
            return _tally(cells, pool.map(_merge_in_worker, cells, chunksize=4), bar)


MERGES_PER_WORKER = 16  # fewer cells than this per worker: not worth a process's start (≈ 1 s)
MAX_MERGE_WORKERS = 16
_WORKER_PLAN: tuple[GridPlan, dict] | None = None  # a merge worker's (plan, facts), set once per process


def _tally(cells: list[Cell], merged_ok, bar) -> set[str]:
    """The ids of the cells whose merge succeeded (``merged_ok``: one bool per cell, in order)."""
    merged = set()
    for c, ok in zip(cells, merged_ok):
        if ok:
            merged.add(c.id)
        bar.update(1)
    return merged


def _merge_worker_init(plan: GridPlan, facts: dict) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = (plan, facts)


def _merge_in_worker(cell: Cell) -> bool:
    """``merge_cell`` in a worker process: whether the cell is merged."""
    assert _WORKER_PLAN is not None
    return merge_cell(_WORKER_PLAN[0], cell, _WORKER_PLAN[1]) is not None


def priced_by(cost_model: dict | None, cell: Cell) -> dict | None:
    """The cost table that priced a cell's decisions (JSON), or None for the proxy costs."""
    if cost_model is None:
        return None
    if not cell.uniform_costs:
        return cost_model
    from asd.core.costs import CostModel
    from asd.evaluation.step import uniform

    return uniform(CostModel.from_dict(cost_model)).to_dict()


def histogram_of(plan: GridPlan, cell_id: str) -> list[float]:
    """The stop histogram [K] of a merged cell (fraction of samples ending at each stage)."""
    from asd.core.policies import stage_histogram
    from asd.traces import read_traces

    tr = read_traces(plan.root / "cells" / cell_id / "traces.h5", fields=["final_stage"])
    h = stage_histogram(tr.data["final_stage"].astype(np.int64), plan.K)
    return [float(x) for x in h]


def grid_entry(plan: GridPlan, cell: Cell, batch_size: int, merged: bool, pool_size: int = 0) -> dict:
    """One cell of grid.json (the evaluation contract's fields, and a few more)."""
    return {
        "cell": cell.id,
        "dataset": cell.dataset,
        "policy": cell.policy,
        "lam": lam_json(cell.lam),
        "kappa": cell.kappa,
        "stage": cell.stage,
        "tau": cell.tau,
        "seed": cell.seed,
        "ablation": cell.ablation,
        "batch_size": batch_size,
        "pool_size": pool_size,
        "temperature": cell.temperature,
        "traces": f"cells/{cell.id}/traces.h5",
        "upper_bound": cell.upper_bound,
        "skips": cell.skips,
        "start": cell.start,
        "uniform_costs": cell.uniform_costs,
        "hist_from": cell.hist_from,
        "outcome_from": list(cell.outcome_from),
        "wave": cell.wave,
        "samples": plan.ev.samples,
        "complete": merged,
    }


def usage(plan: GridPlan) -> tuple[float, float | None, int]:
    """(CPU-hours, GPU-hours or None, task attempts) from every recorded shard attempt: wall × reserved units."""
    cpu = gpu = 0.0
    n = 0
    any_gpu = False
    for p in (plan.root / "timing").glob("*/shard-*.jsonl"):
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            n += 1
            cpu += r["wall_s"] * r.get("cpus", 1) / 3600
            g = r.get("gpus", 0) or 0
            any_gpu |= g > 0
            gpu += r["wall_s"] * g / 3600
    return cpu, (gpu if any_gpu else None), n


def write_grid(plan: GridPlan, facts: dict, merged: set[str], extra: dict) -> Path:
    from asd.cascade import CascadeConfig
    from asd.provenance import provenance

    casc = plan.sections.get("cascade") or CascadeConfig()
    bs = casc.batch_size
    rec = provenance(config={k: to_dict(v) for k, v in plan.sections.items()})
    rec.update(
        schema=GRID_SCHEMA,
        schema_version=GRID_SCHEMA_VERSION,
        mode=plan.mode,
        label=plan.label,
        K=plan.K,
        stage_names=[s.model for s in plan.sections["hierarchy"].stages],
        stage_labels=[s.name for s in plan.sections["hierarchy"].stages],
        source=plan.ev.source,
        predictor=facts.get("predictor"),
        cost_model=facts.get("cost_model"),
        notes=plan.notes,
        cells=[grid_entry(plan, c, bs, c.id in merged, casc.pool_size) for c in plan.cells],
        **extra,
    )
    path = plan.root / GRID_FILE
    _write_json(path, rec)
    return path


def run_grid(plan: GridPlan, progress: bool = True, log=print) -> dict:
    """Run (or finish) every cell; returns grid.json's content. The plan must have been validated."""
    facts = validate(plan)
    prepare_root(plan)
    t0 = time.perf_counter()
    merged: set[str] = set()
    failures: list[str] = []
    # every `asd evaluate` that worked on this folder, this one last; a killed one keeps its last checkpoint
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    this: dict[str, Any] = {"started_utc": now, "wall_time_s": 0.0, "samples_run": 0}
    invocations = [*previous_invocations(plan), this]

    def checkpoint(extra: dict) -> None:
        this["wall_time_s"] = time.perf_counter() - t0
        total = sum(float(i["wall_time_s"]) for i in invocations)
        write_grid(plan, facts, merged, {**extra, "wall_time_s": total, "invocations": invocations})

    checkpoint({"complete": False, "cpu_hours": None, "gpu_hours": None})
    for wave in (1, 2):
        cells = [c for c in plan.cells if c.wave == wave]
        if not cells:
            continue
        ready = []
        for c in cells:
            hist = None
            if c.hist_from:
                if c.hist_from not in merged:
                    failures.append(f"{c.id}: skipped, its dp cell {c.hist_from} did not finish")
                    continue
                hist = histogram_of(plan, c.hist_from)
            if c.outcome_from and not all(o in merged for o in c.outcome_from):
                failures.append(f"{c.id}: skipped, a single cell of {c.outcome_from} did not finish")
                continue
            write_cell_config(plan, c, hist)
            ready.append(c)
        items = _items(plan, ready)
        pending = [it for it in items if not _done(it)]
        log(
            f"asd evaluate: wave {wave}: {len(ready)} cells, {len(items)} shards "
            f"({len(items) - len(pending)} done before), {sum(it.samples for it in pending)} samples to run"
        )
        if pending:
            jobs = _submit(plan, pending, wave)
            failures += _wait(jobs, items, f"wave {wave}", progress)
            this["samples_run"] += sum(it.samples for it in pending)
            checkpoint({"complete": False, "cpu_hours": None, "gpu_hours": None})
        merged |= merge_cells(plan, ready, facts, f"merge wave {wave}", progress)
    cpu, gpu, attempts = usage(plan)
    complete = len(merged) == len(plan.cells)
    missing = [c.id for c in plan.cells if c.id not in merged]
    extra = {
        "complete": complete,
        "cpu_hours": cpu,
        "gpu_hours": gpu,
        "task_attempts": attempts,
        "failures": failures,
        "missing_cells": missing,
    }
    checkpoint(extra)
    return json.loads((plan.root / GRID_FILE).read_text())


def previous_invocations(plan: GridPlan) -> list[dict]:
    """The invocations an earlier ``asd evaluate`` of this folder recorded in grid.json ([] if none)."""
    try:
        rec = json.loads((plan.root / GRID_FILE).read_text())
    except (OSError, ValueError):
        return []
    got = rec.get("invocations")
    if isinstance(got, list):
        return [i for i in got if isinstance(i, dict) and isinstance(i.get("wall_time_s"), (int, float))]
    # a grid.json written before invocations were kept: its one wall time
    w = rec.get("wall_time_s")
    return [{"started_utc": None, "wall_time_s": float(w), "samples_run": None}] if isinstance(w, (int, float)) else []


def _done(it: Item) -> bool:
    from asd.jobs.shard import shard_state

    try:
        return shard_state(it.path, it.ids, it.fp, peek=True)[0] == "done"
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- a quick look


def label_of(c: Cell) -> str:
    """A cell's policy and parameters without dataset and seed, e.g. ``dp λ=1``, ``dp λ=1 from s2``, ``single s3``."""
    p = c.param()
    par = "" if p is None else {"lam": " λ=", "stage": " s", "depth": " ", "tau": " τ="}[p[0]] + p[1]
    par += f" from s{c.start}" if c.start else ""
    return c.policy + par + (f" [{c.ablation}]" if c.ablation else "")


def _stratum(r: dict[str, Any]) -> tuple:
    """The cells a speedup compares within: same dataset, seed and temperature."""
    return r["dataset"], r["seed"], r["temperature"]


def _final_seconds(rows: list[dict[str, Any]]) -> dict[tuple, float]:
    """Stratum → the seconds of its final-stage-alone cell."""
    return {_stratum(r): r["seconds"] for r in rows if r["final"]}


def pooled_speedups(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per label: speedup over the final stage alone, estimated as ``asd analyze`` does for its mixed group —
    per seed, the final stage's summed seconds over the datasets (at the same temperature) divided by the row's
    summed seconds over the same datasets; then the mean over seeds. ``rows``: one per cell with keys ``label``,
    ``dataset``, ``seed``, ``temperature``, ``seconds`` (its batches' wall-clock, s) and ``final`` (True for the
    final stage alone). None where no cell of the label has a reference."""
    ref = _final_seconds(rows)
    sums: dict[str, dict[Any, list[float]]] = {}
    for r in rows:
        key = _stratum(r)
        if key in ref and r["seconds"] > 0:
            acc = sums.setdefault(r["label"], {}).setdefault(r["seed"], [0.0, 0.0])
            acc[0] += ref[key]
            acc[1] += r["seconds"]
    out: dict[str, float | None] = {r["label"]: None for r in rows}
    for label, per_seed in sums.items():
        out[label] = float(np.mean([a / b for a, b in per_seed.values()]))
    return out


def summarize(plan: GridPlan) -> dict:
    """Per cell: accuracy and the seconds its batches took; per policy: the mean accuracy over datasets and seeds
    and the speedup over the final stage alone (``pooled_speedups``: the estimator of ``asd analyze``'s mixed
    group). A quick look without intervals — ``asd analyze`` does the statistics. Written to ``summary.json``."""
    from asd.traces import read_traces

    cells: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []  # pooled_speedups' input, one per cell of ``cells``
    for c in plan.cells:
        p = plan.root / "cells" / c.id / "traces.h5"
        if not p.is_file():
            continue
        tr = read_traces(p, fields=["score", "batch_id", "batch_latency_s"])
        _, first = np.unique(tr.data["batch_id"], return_index=True)
        secs = float(np.nansum(tr.data["batch_latency_s"][first]))
        cells.append({"cell": c, "accuracy": float(np.nanmean(tr.data["score"])), "seconds": secs})
        rows.append(
            {
                "label": label_of(c),
                "dataset": c.dataset,
                "seed": c.seed,
                "temperature": c.temperature,
                "seconds": secs,
                "final": c.policy == "single" and c.stage == plan.K - 1,
            }
        )
    final = _final_seconds(rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r, row in zip(cells, rows, strict=True):
        ref = final.get(_stratum(row))
        r["speedup_vs_final"] = ref / r["seconds"] if ref and r["seconds"] > 0 else None
        groups.setdefault(row["label"], []).append(r)
    speedups = pooled_speedups(rows)
    table = [
        {
            "policy": name,
            "cells": len(rs),
            "accuracy": float(np.mean([r["accuracy"] for r in rs])),
            "speedup_vs_final": speedups[name],
            "seconds": float(np.sum([r["seconds"] for r in rs])),
        }
        for name, rs in groups.items()
    ]
    out = {
        "note": "accuracy: mean over datasets and seeds; speedup: per seed summed seconds of the final stage alone "
        "over the row's, mean over seeds (as asd analyze's mixed group); no intervals (asd analyze: CIs and tests)",
        "label": plan.label,
        "mode": plan.mode,
        "policies": table,
        "cells": [{**{k: v for k, v in r.items() if k != "cell"}, "cell": r["cell"].id} for r in cells],
    }
    _write_json(plan.root / "summary.json", out)
    return out


def format_summary(s: dict) -> str:
    lines = [f"{'policy':<32} {'cells':>5} {'accuracy':>8} {'speedup vs final':>16}"]
    for r in s["policies"]:
        sp = "-" if r["speedup_vs_final"] is None else f"{r['speedup_vs_final']:.2f}x"
        lines.append(f"{r['policy']:<32} {r['cells']:>5} {r['accuracy']:>8.3f} {sp:>16}")
    return "\n".join(lines)
