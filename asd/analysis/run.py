"""An evaluation run folder (what ``asd evaluate`` writes), read and checked before anything is computed.

RUN/grid.json (schema ``asd-eval-grid`` version 1) lists the cells; RUN/cells/<id>/traces.h5 holds each
cell's merged per-sample traces (asd/traces.py, docs/traces.md). ``load_run`` refuses, with one message
naming the file and what is wrong: a folder without grid.json, a grid of another schema or version, a cell
whose fields are missing or unknown, a traces file that is missing, incomplete or of another trace schema,
cells of one dataset and seed that did not see the same prompts, and a (dataset, seed) without the final
stage alone (every speedup is relative to it). docs/analysis.md#input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asd.costs_io import read_json

GRID_SCHEMA = "asd-eval-grid"
GRID_SCHEMA_VERSION = 1
POLICIES = ("dp", "single", "fixed_depth", "threshold", "confidence", "speculative", "lossless", "random", "oracle")
LAM_POLICIES = ("dp", "lossless", "random", "oracle")  # policies whose row is labelled by λ
STAGE_POLICIES = ("single", "fixed_depth")  # by stage / depth
TAU_POLICIES = ("threshold", "confidence")  # by τ
REQUIRED_CELL_KEYS = ("cell", "dataset", "policy", "seed", "traces")
# every field the analysis reads from a cell's traces (the large predictions/features only where needed)
BASE_FIELDS = (
    "sample_id",
    "dataset",
    "prompt_len",
    "ran",
    "draft_len",
    "accepted_len",
    "latency_s",
    "decision",
    "final_stage",
    "score",
    "batch_id",
    "batch_latency_s",
)


class RunError(ValueError):
    """The folder is not an evaluation run this asd can analyse (the message says why and where)."""


@dataclass(frozen=True)
class CellSpec:
    """One cell of grid.json (fields of the evaluation contract, docs/analysis.md#input)."""

    id: str
    dataset: str
    policy: str
    seed: int
    traces: Path
    lam: float | None = None  # inf for the lossless cascade
    kappa: float = 0.0
    stage: int | None = None
    tau: float | None = None
    ablation: str | None = None
    batch_size: int = 0
    temperature: float = 0.0
    upper_bound: bool = False
    start: int = 0  # dp: the stage that generated first (0: the cascade from the smallest stage)

    @property
    def param(self) -> float | int | None:
        """What distinguishes this cell's row within its policy: λ, the stage/depth, or τ."""
        if self.policy in LAM_POLICIES:
            return self.lam
        if self.policy in STAGE_POLICIES:
            return self.stage
        if self.policy in TAU_POLICIES:
            return self.tau
        return None

    @property
    def row(self) -> tuple[str, float | int | None, str | None, int]:
        """(policy, param, ablation, start): the cells of one row differ only in dataset and seed."""
        return (self.policy, self.param, self.ablation, self.start)


@dataclass
class Run:
    """A checked run folder: its cells, the stage count K, and what the traces' attributes say."""

    root: Path
    grid: dict
    cells: list[CellSpec]
    K: int
    mode: str
    stage_names: list[str]
    feature_names: list[str]
    attrs: dict[str, dict] = field(default_factory=dict)  # cell id → decoded trace attributes
    sample_ids: dict[str, np.ndarray] = field(default_factory=dict)  # cell id → [N] sorted sample ids
    _cache: dict[tuple[str, tuple[str, ...]], dict] = field(default_factory=dict, repr=False)
    _index: dict | None = field(default=None, repr=False)

    @property
    def datasets(self) -> list[str]:
        return sorted({c.dataset for c in self.cells})

    @property
    def seeds(self) -> list[int]:
        return sorted({c.seed for c in self.cells})

    def find(
        self, dataset: str, seed: int, policy: str, param=None, ablation: str | None = None, start: int = 0
    ) -> CellSpec | None:
        """The cell of (dataset, seed, policy, param, ablation, start), or None."""
        if self._index is None:
            self._index = {(c.dataset, c.seed, c.policy, _norm(c.param), c.ablation, c.start): c for c in self.cells}
        return self._index.get((dataset, seed, policy, _norm(param), ablation, start))

    def read(self, cell: CellSpec, fields: tuple[str, ...] = BASE_FIELDS) -> dict[str, np.ndarray]:
        """The cell's trace columns (numpy, sorted by sample id); cached per (cell, fields)."""
        key = (cell.id, tuple(fields))
        if key not in self._cache:
            from asd.traces import read_traces

            self._cache[key] = read_traces(self.root / cell.traces, fields=list(fields)).data
        return self._cache[key]


def _norm(x) -> float | None:
    return None if x is None else float(x)


def _lam(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        if v.strip().lower() in ("inf", "infinity"):
            return math.inf
        raise RunError(f"{where}: lam {v!r} is not a number or \"inf\"")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RunError(f"{where}: lam {v!r} is not a number or \"inf\"")
    if math.isnan(v) or v < 0:
        raise RunError(f"{where}: lam {v!r} must be >= 0 or \"inf\"")
    return float(v)


def _int(v: Any, where: str, name: str, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise RunError(f"{where}: {name} must be an integer, got {v!r}")
    return int(v)


def _float(v: Any, where: str, name: str, allow_none: bool = False, default: float = 0.0) -> float | None:
    if v is None:
        return None if allow_none else default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RunError(f"{where}: {name} must be a number, got {v!r}")
    return float(v)


def parse_cell(d: Any, index: int, grid_path: Path) -> CellSpec:
    """One entry of grid.json's ``cells`` → CellSpec; RunError naming the entry and field."""
    where = f"{grid_path}: cells[{index}]"
    if not isinstance(d, dict):
        raise RunError(f"{where}: expected an object, got {type(d).__name__}")
    missing = [k for k in REQUIRED_CELL_KEYS if k not in d]
    if missing:
        raise RunError(f"{where}: missing field(s) {missing}; a cell needs {list(REQUIRED_CELL_KEYS)}")
    where = f"{grid_path}: cell {d['cell']!r}"
    if d["policy"] not in POLICIES:
        raise RunError(f"{where}: unknown policy {d['policy']!r}; valid: {', '.join(POLICIES)}")
    if not isinstance(d["dataset"], str) or not d["dataset"]:
        raise RunError(f"{where}: dataset must be a non-empty string, got {d['dataset']!r}")
    lam = _lam(d.get("lam"), where)
    policy = d["policy"]
    if policy in LAM_POLICIES and lam is None:
        raise RunError(f"{where}: policy {policy!r} needs lam (a number or \"inf\")")
    stage = _int(d.get("stage"), where, "stage", allow_none=True)
    if policy in STAGE_POLICIES and stage is None:
        raise RunError(f"{where}: policy {policy!r} needs stage (an integer)")
    tau = _float(d.get("tau"), where, "tau", allow_none=True)
    if policy in TAU_POLICIES and tau is None:
        raise RunError(f"{where}: policy {policy!r} needs tau (a number)")
    ablation = d.get("ablation")
    if ablation is not None and not isinstance(ablation, str):
        raise RunError(f"{where}: ablation must be null or a string, got {ablation!r}")
    start = _int(d.get("start", 0), where, "start") or 0
    if start < 0 or (start and policy != "dp"):
        raise RunError(f"{where}: start must be 0, or a stage > 0 for policy 'dp', got {start!r}")
    return CellSpec(
        id=str(d["cell"]),
        dataset=d["dataset"],
        policy=policy,
        seed=int(_int(d["seed"], where, "seed") or 0),
        traces=Path(str(d["traces"])),
        lam=lam,
        kappa=float(_float(d.get("kappa"), where, "kappa") or 0.0),
        stage=stage,
        tau=tau,
        ablation=ablation,
        batch_size=int(_int(d.get("batch_size", 0), where, "batch_size") or 0),
        temperature=float(_float(d.get("temperature"), where, "temperature") or 0.0),
        upper_bound=bool(d.get("upper_bound", policy == "oracle")),
        start=int(start),
    )


def read_grid(root: str | Path) -> tuple[Path, dict]:
    """(root, grid.json as a dict), checked for schema and version."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: not a folder (asd analyze takes an evaluation run folder holding grid.json)")
    path = root / "grid.json"
    if not path.is_file():
        raise RunError(f"{root}: not an evaluation run folder: no grid.json (asd evaluate writes one)")
    grid = read_json(path, "grid.json", RunError)
    if not isinstance(grid, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(grid).__name__}")
    if grid.get("schema") != GRID_SCHEMA:
        raise RunError(f"{path}: schema {grid.get('schema')!r}; this asd reads {GRID_SCHEMA!r} run folders")
    if grid.get("schema_version") != GRID_SCHEMA_VERSION:
        raise RunError(
            f"{path}: grid schema version {grid.get('schema_version')!r} but this asd reads version "
            f"{GRID_SCHEMA_VERSION}; analyse it with the asd version that wrote it"
        )
    if grid.get("mode", "online") not in ("online", "replay"):
        raise RunError(f"{path}: mode {grid.get('mode')!r}; valid: online, replay")
    if not isinstance(grid.get("cells"), list) or not grid["cells"]:
        raise RunError(f"{path}: no cells (the 'cells' list is missing or empty)")
    return root, grid


def load_run(root: str | Path) -> Run:
    """Read and check a run folder (see the module docstring); nothing is written."""
    import h5py

    from asd.traces import PARTIAL_SUFFIX, check_schema, decode_attrs

    root, grid = read_grid(root)
    gpath = root / "grid.json"
    cells = [parse_cell(d, i, gpath) for i, d in enumerate(grid["cells"])]
    ids = [c.id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RunError(f"{gpath}: duplicate cell id(s) {dup[:5]}")
    missing: list[str] = []
    incomplete: list[str] = []
    for c in cells:
        p = root / c.traces
        if not p.is_file():
            (incomplete if p.with_name(p.name + PARTIAL_SUFFIX).exists() else missing).append(c.id)
    if missing or incomplete:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} cell(s) without traces: {', '.join(missing[:6])}" + (" …" if len(missing) > 6 else "")
            )
        if incomplete:
            parts.append(
                f"{len(incomplete)} cell(s) still running or crashed (only a .partial file): "
                + ", ".join(incomplete[:6])
            )
        raise RunError(f"{root}: missing cells: " + "; ".join(parts) + " (finish the run: asd evaluate resumes)")
    attrs: dict[str, dict] = {}
    sample_ids: dict[str, np.ndarray] = {}
    Ks: dict[int, str] = {}
    feature_names: list[str] = []
    for c in cells:
        p = root / c.traces
        try:
            with h5py.File(p, "r") as f:
                check_schema(f, p)
                a = decode_attrs(f.attrs)
                if not a.get("complete", False):
                    raise RunError(f"{p}: trace file of cell {c.id!r} is incomplete (its writer did not finish)")
                n = int(a.get("n_complete", len(f["sample_id"])))
                sample_ids[c.id] = np.asarray(f["sample_id"][:n], dtype=np.int64)
                feature_names = json.loads(f["features"].attrs.get("feature_names", "[]"))
        except OSError as e:
            raise RunError(f"{p}: not a readable HDF5 trace file ({e})") from e
        except ValueError as e:
            if isinstance(e, RunError):
                raise
            raise RunError(str(e)) from e
        attrs[c.id] = a
        Ks.setdefault(int(a.get("num_stages", 0)), c.id)
        if sample_ids[c.id].size == 0:
            raise RunError(f"{p}: cell {c.id!r} holds no samples")
    if len(Ks) != 1:
        raise RunError(
            f"{root}: cells disagree on the number of stages: " + ", ".join(f"K={k} ({i})" for k, i in Ks.items())
        )
    K = next(iter(Ks))
    bad = [c.id for c in cells if c.policy in STAGE_POLICIES and not 0 <= int(c.stage or 0) < K]
    if bad:
        raise RunError(f"{gpath}: stage out of range 0..{K - 1} in cell(s) {bad[:5]}")
    _check_pairs(root, cells, sample_ids)
    for ds in sorted({c.dataset for c in cells}):
        for s in sorted({c.seed for c in cells if c.dataset == ds}):
            if not any(
                c.policy == "single" and c.stage == K - 1 and c.ablation is None and c.dataset == ds and c.seed == s
                for c in cells
            ):
                raise RunError(
                    f"{root}: missing cells: the final stage alone (policy single, stage {K - 1}) of dataset {ds!r} "
                    f"seed {s}; every speedup is relative to it"
                )
    return Run(
        root=root,
        grid=grid,
        cells=cells,
        K=K,
        mode=str(grid.get("mode", "online")),
        stage_names=_stage_names(attrs[cells[0].id], K),
        feature_names=feature_names,
        attrs=attrs,
        sample_ids=sample_ids,
    )


def _check_pairs(root: Path, cells: list[CellSpec], sample_ids: dict[str, np.ndarray]) -> None:
    """Every cell of one (dataset, seed) holds the same sample ids (the paired tests need it)."""
    first: dict[tuple[str, int], str] = {}
    for c in cells:
        key = (c.dataset, c.seed)
        ref = first.setdefault(key, c.id)
        a, b = sample_ids[ref], sample_ids[c.id]
        if not np.array_equal(a, b):
            only = np.setdiff1d(b, a)[:5].tolist() + np.setdiff1d(a, b)[:5].tolist()
            raise RunError(
                f"{root}: cells {ref!r} and {c.id!r} (dataset {c.dataset!r}, seed {c.seed}) hold different "
                f"sample ids ({a.size} vs {b.size}; e.g. {only}): every policy of one seed must see the same prompts"
            )


def _stage_names(attrs: dict, K: int) -> list[str]:
    """The hierarchy's stage names (the traces' config), else the model names, else s0..s{K-1}."""
    cfg = attrs.get("config")
    stages = ((cfg or {}).get("hierarchy") or {}).get("stages") if isinstance(cfg, dict) else None
    if isinstance(stages, list) and len(stages) == K and all(isinstance(s, dict) and s.get("name") for s in stages):
        return [str(s["name"]) for s in stages]
    models = attrs.get("models") or []
    names = [m.get("name", f"s{k}") if isinstance(m, dict) else str(m) for k, m in enumerate(models)]
    return names if len(names) == K else [f"s{k}" for k in range(K)]
