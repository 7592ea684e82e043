"""``analyze(run)``: the statistics of an evaluation run (docs/analysis.md).

Rows are (policy, parameter, ablation) — e.g. dp at λ = 1, the final stage alone, threshold τ = 0.7 — in
each *group*: every dataset alone and ``all`` (the run's datasets mixed: the samples of every dataset pooled,
each stratum resampled on its own). Per row and group: accuracy; speedup against every single stage and the
lossless cascade; the accuracy difference against the final stage alone; paired tests against the final
stage alone and the lossless cascade; stage utilisation; regret against the oracle at the same λ; the
Qwen2.5-scale projection. Per group: the Pareto frontier (speed, accuracy) and whether every baseline is
matched by a dp point. Per run: the drift of the cost table that priced the decisions against the measured
stage calls.

Point estimates are means over seeds of per-seed values; every interval is given twice (see
asd.analysis.stats): resampling the samples within each seed (``ci_samples``) and resampling the seeds
(``ci_seeds``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asd.analysis import calls as C
from asd.analysis import stats as S
from asd.analysis.run import CellSpec, Run

SCHEMA = "asd-analysis"
SCHEMA_VERSION = 1
ALL = "all"  # the group of every dataset mixed
DEFAULT_TABLES = ("configs/costs/h200-qwen2.5-tp4.json", "configs/costs/h100-qwen2.5.json")
BASELINES = ("single", "fixed_depth", "threshold", "confidence", "speculative", "lossless", "random")


@dataclass
class AnalysisConfig:
    """Options of ``asd analyze`` (the command's flags)."""

    resamples: int = 5000  # bootstrap resamples of every interval
    level: float = S.LEVEL  # two-sided confidence level
    seed: int = 0  # seed of the resampling (the same seed gives the same intervals)
    projection_tables: list[str] = field(default_factory=lambda: list(DEFAULT_TABLES))  # GPU cost tables
    drift_table: str | None = None  # price the calls with this table where a cell recorded none

    def __post_init__(self) -> None:
        if self.resamples < 100:
            raise ValueError(f"resamples must be >= 100, got {self.resamples}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")


# ---------------------------------------------------------------------------------------------------------
def label(policy: str, param, ablation: str | None, stage_names: list[str], start: int = 0) -> str:
    """A row's name in tables and figures, e.g. ``dp λ=1``, ``dp λ=1 from s2``, ``single s3``,
    ``threshold τ=0.7 [no_skips]``."""
    K = len(stage_names)
    if policy in ("dp", "random", "oracle"):
        s = f"{policy} λ={fmt_num(param)}"
        if start:
            s += f" from {stage_names[start]}"
    elif policy == "lossless":
        s = "lossless (λ=∞)"
    elif policy == "single":
        s = f"single {stage_names[int(param)]}"
    elif policy == "fixed_depth":
        s = f"fixed depth {int(param)}"
    elif policy in ("threshold", "confidence"):
        s = f"{policy} τ={fmt_num(param)}"
    elif policy == "speculative":
        s = f"speculative {stage_names[0]}→{stage_names[K - 1]}"
    else:
        s = policy
    if policy == "oracle":
        s += " (upper bound)"
    return s + (f" [{ablation}]" if ablation else "")


def fmt_num(x) -> str:
    if x is None:
        return "—"
    x = float(x)
    return "∞" if math.isinf(x) else f"{x:g}"


def jsonable(x: Any) -> Any:
    """inf → "inf", NaN → None, numpy scalars/arrays → Python (valid JSON everywhere)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


# ---------------------------------------------------------------------------------------------------------
@dataclass
class CellData:
    """What the analysis needs of one cell, per sample (arrays [N] aligned with the stratum's ids)."""

    spec: CellSpec
    score: np.ndarray  # [N] float, NaN = unscored
    lat: np.ndarray  # [N] seconds charged (asd.analysis.calls.sample_latency)
    lat_method: str
    batch_id: np.ndarray  # [N]
    ran: np.ndarray  # [N, K]
    final_stage: np.ndarray  # [N]
    calls: C.Calls
    proj_wall: dict[str, np.ndarray] = field(default_factory=dict)  # table → [N] projected seconds (batch share)
    proj_gpu: dict[str, np.ndarray] = field(default_factory=dict)  # table → [N] projected GPU-seconds
    agree: np.ndarray | None = None  # [N] 1.0 where the returned tokens equal the final stage alone's


class Stratum:
    """One (dataset, seed): its cells' per-sample columns and their bootstrap resampled sums."""

    def __init__(self, dataset: str, seed: int, n: int):
        self.dataset, self.seed, self.n = dataset, seed, n
        self.cols: dict[tuple[str, str], np.ndarray] = {}
        self.index: dict[tuple[str, str], int] = {}
        self.point: np.ndarray | None = None  # [Cols]
        self.boot: np.ndarray | None = None  # [R, Cols]

    def add(self, cell_id: str, qty: str, v: np.ndarray) -> None:
        assert v.shape == (self.n,), (cell_id, qty, v.shape, self.n)
        self.cols[(cell_id, qty)] = np.asarray(v, np.float64)

    def resample(self, counts: np.ndarray) -> None:
        keys = list(self.cols)
        self.index = {k: i for i, k in enumerate(keys)}
        V = np.stack([self.cols[k] for k in keys], 1)  # [n, Cols]
        self.point = V.sum(0)
        # float32 halves the memory of [R, columns]; sums of a few thousand values keep 6-7 digits
        self.boot = counts.astype(np.float32) @ V.astype(np.float32)

    def sums(self, cell_id: str, qty: str) -> tuple[float, np.ndarray]:
        """(sum over the stratum's samples, [R] resampled sums) of a column."""
        assert self.point is not None and self.boot is not None
        i = self.index[(cell_id, qty)]
        return float(self.point[i]), self.boot[:, i].astype(np.float64)


# ---------------------------------------------------------------------------------------------------------
def analyze(run: Run, cfg: AnalysisConfig | None = None, progress: bool = False) -> dict:
    """The analysis record (a JSON-ready dict) of a checked run folder; reads only the run and cost tables."""
    from asd.costs_io import load_cost_model
    from asd.provenance import REPO_ROOT, provenance

    cfg = cfg or AnalysisConfig()
    K = run.K
    notes: list[str] = []
    tables = {}
    for t in cfg.projection_tables:
        p = Path(t)
        p = p if p.is_absolute() or p.exists() else REPO_ROOT / p
        tables[p.stem] = load_cost_model(p)
    for name, tm in list(tables.items()):
        if tm.num_stages != K:
            notes.append(f"projection with {name} skipped: the table has {tm.num_stages} stages, the run K={K}")
            del tables[name]
    drift_model = load_cost_model(cfg.drift_table) if cfg.drift_table else None

    data = _load_cells(run, tables, progress)
    strata = _strata(run, data, tables, cfg)
    groups: dict[str, dict] = {}
    group_names = [*run.datasets, ALL] if len(run.datasets) > 1 else list(run.datasets)
    for g in group_names:
        dsets = run.datasets if g == ALL else [g]
        groups[g] = _group(run, data, strata, dsets, tables, cfg, notes)
    _holm(groups)
    final = run.stage_names[K - 1]
    for body in groups.values():
        body["pareto"] = pareto(body["rows"], final)
        body["coverage"] = coverage(body["rows"], final)
    drift = _drift(run, data, drift_model)
    label_run = "replay" if run.mode == "replay" else None
    rec = {
        "schema": SCHEMA,
        **provenance(config=run.grid.get("config"), schema_version=SCHEMA_VERSION),
        "run": str(run.root),
        "run_git_revision": run.grid.get("git_revision"),
        "mode": run.mode,
        "label": label_run,
        "run_label": run.grid.get("label"),
        "K": K,
        "stage_names": run.stage_names,
        "datasets": run.datasets,
        "seeds": run.seeds,
        "cells": len(run.cells),
        "wall_time_s": run.grid.get("wall_time_s"),
        "invocations": len(run.grid.get("invocations") or []) or None,
        "cpu_hours": run.grid.get("cpu_hours"),
        "gpu_hours": run.grid.get("gpu_hours"),
        "options": {
            "resamples": cfg.resamples,
            "level": cfg.level,
            "seed": cfg.seed,
            "projection_tables": list(tables),
            "drift_table": cfg.drift_table,
        },
        "latency_method": sorted({d.lat_method for d in data.values()}),
        "methods": METHODS,
        "groups": groups,
        "drift": drift,
        "projection": {
            "label": "projection",
            "tables": {
                name: {
                    "stages": [s.name for s in tm.stages],
                    "devices": C.stage_devices(tm).tolist(),
                    "source": str(name),
                    "measured_on": ((tm.provenance.get("measured") or {}).get("environment") or {}).get("gpu"),
                }
                for name, tm in tables.items()
            },
        },
        "notes": notes,
    }
    return jsonable(rec)


METHODS = {
    "accuracy": "mean task score per seed; the row's value is the mean over seeds",
    "ci_samples": "percentile bootstrap, resampling samples with replacement within each (dataset, seed), the "
    "same draws for every cell of that stratum (paired), the statistic recomputed per resample",
    "ci_seeds": "percentile bootstrap over the per-seed values (scipy.stats.bootstrap); null with one seed",
    "latency": "per-sample latency = the sample's share of its batch's wall-clock (batch_latency_s / samples in "
    "the batch); a stage-call share where the batch wall-clock is missing",
    "speedup": "per seed: summed latency of the reference cell / summed latency of the row over the same prompts "
    "(a ratio of wall-clock at the same batch size); the row's value is the mean over seeds",
    "mcnemar": "exact McNemar (binomial test on the discordant pairs) of paired 0/1 scores, pairs pooled over "
    "seeds (and datasets in 'all'); Wilcoxon signed-rank on the scores when a score is fractional",
    "wilcoxon": "Wilcoxon signed-rank (two-sided, zeros dropped) of paired latencies: per batch (batch wall-clock) "
    "when both cells ran the same batches, else per sample",
    "holm": "Holm step-down over the tests of one group, reference and metric (every row of that group)",
    "regret": "against the oracle at the same λ: accuracy(oracle) − accuracy(row), and J(row) − J(oracle) with "
    "J = λ·(1 − agreement with the final stage alone) + summed latency / the final stage alone's",
    "projection": "each sample's recorded calls re-priced with a measured GPU cost table (asd.analysis.calls), "
    "per-sample share of the priced batch; GPU-seconds = seconds × the stage's devices",
    "pareto": "rows not dominated in (speedup vs the final stage alone, accuracy); oracle and ablations left out",
    "coverage": "a baseline is covered when a dp row's ci_samples upper bounds reach the baseline's speedup and "
    "accuracy",
}


def _load_cells(run: Run, tables: dict, progress: bool) -> dict[str, CellData]:
    from tqdm import tqdm

    out: dict[str, CellData] = {}
    for c in tqdm(run.cells, desc="read cells", unit="cell", disable=not progress):
        d = run.read(c)
        calls = C.recover_calls(d, speculative=c.policy == "speculative")
        lat, method = C.sample_latency(d, calls)
        cd = CellData(
            spec=c,
            score=np.asarray(d["score"], np.float64),
            lat=lat,
            lat_method=method,
            batch_id=np.asarray(d["batch_id"], np.int64),
            ran=np.asarray(d["ran"], bool),
            final_stage=np.asarray(d["final_stage"], np.int64),
            calls=calls,
        )
        gamma, _ = C.gamma_of(run.attrs[c.id], run.grid)
        for name, tm in tables.items():
            secs, gpu = C.price_calls(calls, tm, gamma)
            cd.proj_wall[name] = C.batch_share(calls, secs, cd.batch_id)
            cd.proj_gpu[name] = C.batch_share(calls, gpu, cd.batch_id)
        out[c.id] = cd
    # agreement with the final stage alone (same dataset, seed; the ablation's own final cell if it has one)
    for c in run.cells:
        ref = run.find(c.dataset, c.seed, "single", run.K - 1, c.ablation) or run.find(
            c.dataset, c.seed, "single", run.K - 1
        )
        assert ref is not None  # load_run checked
        a = run.read(c, ("tokens",))["tokens"]
        b = run.read(ref, ("tokens",))["tokens"]
        out[c.id].agree = np.array([np.array_equal(x, y) for x, y in zip(a, b)], np.float64)
    return out


def _strata(run: Run, data: dict[str, CellData], tables: dict, cfg: AnalysisConfig) -> dict[tuple[str, int], Stratum]:
    out = {}
    for si, (ds, seed) in enumerate(sorted({(c.dataset, c.seed) for c in run.cells})):
        cells = [c for c in run.cells if (c.dataset, c.seed) == (ds, seed)]
        n = run.sample_ids[cells[0].id].size
        st = Stratum(ds, seed, n)
        for c in cells:
            d = data[c.id]
            st.add(c.id, "score", np.nan_to_num(d.score))
            st.add(c.id, "scored", np.isfinite(d.score).astype(np.float64))
            st.add(c.id, "lat", d.lat)
            st.add(c.id, "agree", d.agree if d.agree is not None else np.zeros(n))
            for t in tables:
                st.add(c.id, f"wall:{t}", d.proj_wall[t])
                st.add(c.id, f"gpu:{t}", d.proj_gpu[t])
        rng = np.random.default_rng([cfg.seed, si])
        st.resample(S.resample_counts(n, cfg.resamples, rng))
        out[(ds, seed)] = st
    return out


# ---------------------------------------------------------------------------------------------------------
def _block(point: np.ndarray, boot: np.ndarray, cfg: AnalysisConfig, seeds: list[int]) -> dict:
    """A statistic given per seed ([S] values, [S, R] resamples) → mean, both intervals, per-seed values."""
    point = np.asarray(point, np.float64)
    m = float(np.mean(point)) if point.size else math.nan
    lo, hi = S.percentile_interval(np.mean(boot, axis=0), cfg.level) if point.size else (math.nan, math.nan)
    si = S.seed_interval(point, cfg.level, cfg.resamples, cfg.seed)
    return {
        "mean": m,
        "ci_samples": [lo, hi],
        "ci_seeds": [si["lo"], si["hi"]] if si else None,
        "per_seed": dict(zip([str(s) for s in seeds], point.tolist())),
    }


class _Sums:
    """Summed columns of one row (or reference) in one group, per seed: points [S] and resamples [S, R]."""

    def __init__(self, strata: dict, cells_by_seed: dict[int, list[CellSpec]], seeds: list[int]):
        self.strata, self.cells, self.seeds = strata, cells_by_seed, seeds

    def get(self, qty: str) -> tuple[np.ndarray, np.ndarray]:
        pts, boots = [], []
        for s in self.seeds:
            p, b = 0.0, 0.0
            for c in self.cells[s]:
                pp, bb = self.strata[(c.dataset, c.seed)].sums(c.id, qty)
                p, b = p + pp, b + bb
            pts.append(p)
            boots.append(b)
        return np.array(pts), np.stack(boots)

    def n(self) -> np.ndarray:
        return np.array([sum(self.strata[(c.dataset, c.seed)].n for c in self.cells[s]) for s in self.seeds], float)


def _row_cells(run: Run, key, dsets: list[str]) -> dict[int, list[CellSpec]]:
    """seed → the row's cells (one per dataset of the group); only seeds where every dataset has the cell."""
    policy, param, ablation, start = key
    out = {}
    for s in run.seeds:
        cs = [run.find(ds, s, policy, param, ablation, start) for ds in dsets]
        if all(c is not None for c in cs):
            out[s] = [c for c in cs if c is not None]
    return out


def _ref_cells(run: Run, row: dict[int, list[CellSpec]], policy: str, param, ablation: str | None):
    """seed → the reference's cells beside the row's (the same ablation where the run has it, else none)."""
    out = {}
    for s, cs in row.items():
        refs = []
        for c in cs:
            r = run.find(c.dataset, s, policy, param, ablation) if ablation else None
            r = r or run.find(c.dataset, s, policy, param, None)
            if r is None:
                break
            refs.append(r)
        else:
            out[s] = refs
    return out


def _group(run, data, strata, dsets, tables, cfg, notes) -> dict:
    K = run.K
    keys = sorted({c.row for c in run.cells}, key=_row_order)
    rows = []
    for key in keys:
        cells = _row_cells(run, key, dsets)
        if not cells:
            continue
        policy, param, ablation, start = key
        seeds = sorted(cells)
        row_sums = _Sums(strata, cells, seeds)
        sc, scb = row_sums.get("score")
        nn, nnb = row_sums.get("scored")
        with np.errstate(invalid="ignore", divide="ignore"):
            acc_p, acc_b = sc / nn, scb / nnb
        lat, _ = row_sums.get("lat")
        nsamp = row_sums.n()
        row: dict[str, Any] = {
            "policy": policy,
            "param": param,
            "ablation": ablation,
            "start": start,
            "label": label(policy, param, ablation, run.stage_names, start),
            "upper_bound": policy == "oracle",
            "seeds": seeds,
            "samples_per_seed": float(np.mean(nsamp)),
            "cells": [c.id for s in seeds for c in cells[s]],
            "accuracy": _block(acc_p, acc_b, cfg, seeds),
            "latency_ms": float(np.mean(lat / nsamp) * 1e3),
            "utilisation": _utilisation(data, cells, K),
            "latency_method": sorted({data[c.id].lat_method for s in seeds for c in cells[s]}),
            "speedup": {},
            "tests": {},
        }
        # speedups: vs every single stage, vs the lossless cascade (same seed's cells)
        refs: dict[str, tuple[str, float]] = {run.stage_names[k]: ("single", float(k)) for k in range(K)}
        refs["lossless"] = ("lossless", math.inf)
        for name, (rp, rpar) in refs.items():
            rc = _ref_cells(run, cells, rp, rpar, ablation)
            common = [s for s in seeds if s in rc]
            if not common:
                continue
            rs = _Sums(strata, rc, common)
            me = _Sums(strata, {s: cells[s] for s in common}, common)
            a, ab = rs.get("lat")
            b, bb = me.get("lat")
            row["speedup"][name] = _block(a / b, ab / bb, cfg, common)
            if name == run.stage_names[K - 1]:
                ra, rab = rs.get("score")
                rn, rnb = rs.get("scored")
                ma, mab = me.get("score")
                mn, mnb = me.get("scored")
                row["accuracy_diff_vs_final"] = _block(ma / mn - ra / rn, mab / mnb - rab / rnb, cfg, common)
                for t in tables:
                    w0, w0b = rs.get(f"wall:{t}")
                    w1, w1b = me.get(f"wall:{t}")
                    g0, g0b = rs.get(f"gpu:{t}")
                    g1, g1b = me.get(f"gpu:{t}")
                    row.setdefault("projection", {})[t] = {
                        "wall_speedup": _block(w0 / w1, w0b / w1b, cfg, common),
                        "gpu_speedup": _block(g0 / g1, g0b / g1b, cfg, common),
                        "wall_s_per_sample": float(np.mean(w1 / me.n())),
                        "gpu_s_per_sample": float(np.mean(g1 / me.n())),
                    }
            if name in (run.stage_names[K - 1], "lossless") and not (rp == policy and _eqp(rpar, param)):
                tag = "vs_final" if name != "lossless" else "vs_lossless"
                row["tests"][tag] = _tests(data, cells, rc, common)
        row["regret"] = _regret(run, strata, cells, key, dsets, cfg)
        rows.append(row)
    return {"datasets": dsets, "rows": rows}


def _eqp(a, b) -> bool:
    return a is not None and b is not None and float(a) == float(b)


_ORDER = {
    p: i
    for i, p in enumerate(
        ("dp", "lossless", "single", "fixed_depth", "threshold", "confidence", "speculative", "random", "oracle")
    )
}


def _row_order(key) -> tuple:
    policy, param, ablation, start = key
    return (
        ablation is not None,
        ablation or "",
        _ORDER.get(policy, 99),
        start,
        -1e300 if param is None else float(param),
    )


def _utilisation(data: dict[str, CellData], cells: dict[int, list[CellSpec]], K: int) -> dict:
    fs = np.concatenate([data[c.id].final_stage for cs in cells.values() for c in cs])
    ran = np.concatenate([data[c.id].ran for cs in cells.values() for c in cs])
    return {
        "ended": (np.bincount(fs[fs >= 0], minlength=K)[:K] / max(1, fs.size)).tolist(),
        "ran": ran.mean(0).tolist(),
    }


def _tests(data, row: dict[int, list[CellSpec]], ref: dict[int, list[CellSpec]], seeds: list[int]) -> dict:
    """Paired tests of a row against a reference, pairs pooled over seeds and datasets."""
    sa, sb, la, lb = [], [], [], []
    same_batches = True
    ba, bb = [], []
    for s in seeds:
        for c, r in zip(row[s], ref[s]):
            x, y = data[c.id], data[r.id]
            sa.append(x.score)
            sb.append(y.score)
            la.append(x.lat)
            lb.append(y.lat)
            px = np.unique(x.batch_id, return_inverse=True)[1]
            py = np.unique(y.batch_id, return_inverse=True)[1]
            if np.array_equal(px, py):
                ba.append(np.bincount(px, weights=x.lat))
                bb.append(np.bincount(py, weights=y.lat))
            else:
                same_batches = False
    a, b = np.concatenate(sa), np.concatenate(sb)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    binary = bool(np.all(np.isin(a, (0.0, 1.0))) and np.all(np.isin(b, (0.0, 1.0))))
    acc = S.mcnemar_exact(a, b) if binary else S.wilcoxon_signed_rank(a, b)
    if same_batches:
        lat = S.wilcoxon_signed_rank(np.concatenate(ba), np.concatenate(bb))
        lat["unit"] = "batch"
    else:
        lat = S.wilcoxon_signed_rank(np.concatenate(la), np.concatenate(lb))
        lat["unit"] = "sample"
    return {"accuracy": acc, "latency": lat}


def _holm(groups: dict) -> None:
    """Adds ``p_holm`` to every test: Holm within (group, reference, metric)."""
    for g in groups.values():
        for ref in ("vs_final", "vs_lossless"):
            for metric in ("accuracy", "latency"):
                tests = [r["tests"][ref][metric] for r in g["rows"] if ref in r["tests"]]
                adj = S.holm([t["pvalue"] for t in tests])
                for t, p in zip(tests, adj):
                    t["p_holm"] = float(p)
                    t["family"] = len(tests)


def _regret(run: Run, strata, cells: dict[int, list[CellSpec]], key, dsets, cfg) -> dict | None:
    """Regret against the oracle at the row's λ (rows from stage 0 with a finite λ, other than the oracle: the
    oracle's routes start at stage 0 too)."""
    policy, param, _, start = key
    if policy not in ("dp", "random") or param is None or not math.isfinite(float(param)) or start:
        return None
    lam = float(param)
    oc: dict[int, tuple[list[CellSpec], list[CellSpec]]] = {}
    for s, cs in cells.items():
        o = [run.find(c.dataset, s, "oracle", lam, None) for c in cs]
        f = [run.find(c.dataset, s, "single", run.K - 1, None) for c in cs]
        oo = [c for c in o if c is not None]
        ff = [c for c in f if c is not None]
        if len(oo) == len(cs) and len(ff) == len(cs):
            oc[s] = (oo, ff)
    seeds = sorted(oc)
    if not seeds:
        return None
    row = _Sums(strata, {s: cells[s] for s in seeds}, seeds)
    ora = _Sums(strata, {s: oc[s][0] for s in seeds}, seeds)
    fin = _Sums(strata, {s: oc[s][1] for s in seeds}, seeds)
    n = row.n()
    fl, flb = fin.get("lat")

    def objective(su: _Sums):
        ag, agb = su.get("agree")
        la, lab = su.get("lat")
        sc, scb = su.get("score")
        nn, nnb = su.get("scored")
        return lam * (1 - ag / n) + la / fl, lam * (1 - agb / n[:, None]) + lab / flb, sc / nn, scb / nnb

    j1, j1b, a1, a1b = objective(row)
    j0, j0b, a0, a0b = objective(ora)
    return {
        "oracle_lam": lam,
        "objective": _block(j1 - j0, j1b - j0b, cfg, seeds),
        "accuracy": _block(a0 - a1, a0b - a1b, cfg, seeds),
    }


# ---------------------------------------------------------------------------------------------------------
def _point(row: dict, final: str) -> tuple[float, float] | None:
    """(speedup vs the final stage alone, accuracy) of a row, or None without that speedup."""
    sp = row["speedup"].get(final)
    if sp is None or sp["mean"] is None or row["accuracy"]["mean"] is None:
        return None
    return sp["mean"], row["accuracy"]["mean"]


def pareto(rows: list[dict], final: str) -> dict:
    """Rows (no oracle, no ablation) not dominated in (speedup vs the final stage alone, accuracy)."""
    pts: dict[str, tuple[float, float]] = {}
    for r in rows:
        p = _point(r, final)
        if r["policy"] != "oracle" and r["ablation"] is None and p is not None:
            pts[r["label"]] = p
    front = [
        a
        for a, (x, y) in pts.items()
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for b, (x2, y2) in pts.items() if b != a)
    ]
    front.sort(key=lambda a: pts[a][0])
    return {"frontier": front, "points": {a: list(p) for a, p in pts.items()}}


def coverage(rows: list[dict], final: str) -> list[dict]:
    """For every baseline row: the dp rows that match it in speed and accuracy within their intervals."""
    dps = [r for r in rows if r["policy"] == "dp" and r["ablation"] is None and _point(r, final) is not None]
    out = []
    for b in rows:
        p = _point(b, final)
        if b["policy"] not in BASELINES or b["ablation"] is not None or p is None:
            continue
        bx, by = p
        by_dp = [
            d["label"]
            for d in dps
            if d["speedup"][final]["ci_samples"][1] >= bx and d["accuracy"]["ci_samples"][1] >= by
        ]
        out.append({"baseline": b["label"], "covered": bool(by_dp), "by": by_dp})
    return out


# ---------------------------------------------------------------------------------------------------------
def _drift(run: Run, data: dict[str, CellData], fallback) -> dict:
    """Measured stage calls against the cost table that priced the decisions (per table and stage)."""
    from asd.core.costs import CostModel

    by_table: dict[str, dict] = {}
    for c in run.cells:
        if c.ablation == "uniform_costs":  # priced on purpose with every stage alike: no drift to measure
            continue
        cm_raw = run.attrs[c.id].get("cost_model")
        if isinstance(cm_raw, dict):
            try:
                cm = CostModel.from_dict(cm_raw, source=f"{c.id} cost_model")
            except ValueError as e:
                raise ValueError(f"{run.root / c.traces}: attribute cost_model: {e}") from e
            name = "recorded:" + ",".join(s.name for s in cm.stages)
        elif fallback is not None:
            cm, name = fallback, "given:" + ",".join(s.name for s in fallback.stages)
        else:
            continue
        if cm.num_stages != run.K:
            continue
        d = data[c.id]
        gamma, _ = C.gamma_of(run.attrs[c.id], run.grid)
        est, _ = C.price_calls(d.calls, cm, gamma)
        t = by_table.setdefault(name, {"est": [], "meas": [], "stage": [], "kind": [], "bmeas": [], "best": []})
        t["est"].append(est)
        t["meas"].append(d.calls.measured_s)
        t["stage"].append(d.calls.stage)
        t["kind"].append(d.calls.kind)
        bl = run.read(c)["batch_latency_s"]
        ub, first = np.unique(d.batch_id, return_index=True)
        tot = np.zeros(ub.size)
        np.add.at(tot, np.searchsorted(ub, d.calls.batch), est)
        t["bmeas"].append(np.asarray(bl)[first])
        t["best"].append(tot)
    if not by_table:
        return {
            "applicable": False,
            "reason": "no cell recorded a cost table (every decision was priced with the proxy costs) and no "
            "--drift-table was given",
        }
    out: dict[str, Any] = {"applicable": True, "tables": {}}
    rng = np.random.default_rng(0)
    for name, t in by_table.items():
        est, meas = np.concatenate(t["est"]), np.concatenate(t["meas"])
        stage, kind = np.concatenate(t["stage"]), np.concatenate(t["kind"])
        stages = []
        for k in range(run.K):
            m = (stage == k) & (est > 0) & np.isfinite(meas) & (meas > 0)
            if not m.any():
                stages.append({"stage": k, "name": run.stage_names[k], "calls": 0})
                continue
            r = meas[m] / est[m]
            q1, med, q3 = np.quantile(r, [0.25, 0.5, 0.75])
            stages.append(
                {
                    "stage": k,
                    "name": run.stage_names[k],
                    "calls": int(m.sum()),
                    "ratio_median": float(med),
                    "ratio_q1": float(q1),
                    "ratio_q3": float(q3),
                    "measured_s": float(meas[m].sum()),
                    "estimated_s": float(est[m].sum()),
                }
            )
        bm, be = np.concatenate(t["bmeas"]), np.concatenate(t["best"])
        ok = np.isfinite(bm) & (be > 0)
        keep = rng.permutation(est.size)[:3000]  # the figure's points (a random subset of at most 3,000 calls)
        out["tables"][name] = {
            "stages": stages,
            "batches": {
                "n": int(ok.sum()),
                "ratio_median": float(np.median(bm[ok] / be[ok])) if ok.any() else None,
                "measured_s": float(bm[ok].sum()),
                "estimated_s": float(be[ok].sum()),
            },
            "points": {
                "estimated_s": est[keep].tolist(),
                "measured_s": meas[keep].tolist(),
                "stage": stage[keep].tolist(),
                "kind": [C.KIND_NAMES[i] for i in kind[keep]],
            },
        }
    return out


def headline(rec: dict, group: str = ALL) -> list[dict]:
    """The compact record of one group (per row: accuracy, CI, speedup vs the final stage alone, CI)."""
    g = rec["groups"].get(group) or next(iter(rec["groups"].values()))
    out = []
    for r in g["rows"]:
        fin = r["speedup"].get(rec["stage_names"][-1])
        out.append(
            {
                "label": r["label"],
                "policy": r["policy"],
                "param": r["param"],
                "ablation": r["ablation"],
                "start": r.get("start", 0),
                "accuracy": r["accuracy"]["mean"],
                "accuracy_ci_samples": r["accuracy"]["ci_samples"],
                "accuracy_ci_seeds": r["accuracy"]["ci_seeds"],
                "speedup_vs_final": fin["mean"] if fin else None,
                "speedup_ci_samples": fin["ci_samples"] if fin else None,
                "speedup_ci_seeds": fin["ci_seeds"] if fin else None,
                "accuracy_diff_vs_final": (r.get("accuracy_diff_vs_final") or {}).get("mean"),
                "accuracy_diff_ci_samples": (r.get("accuracy_diff_vs_final") or {}).get("ci_samples"),
            }
        )
    return out


def format_table(rec: dict, group: str = ALL, ablations: bool = False) -> str:
    """The short terminal table of one group."""
    g = rec["groups"].get(group)
    if g is None:
        group, g = next(iter(rec["groups"].items()))
    fin = rec["stage_names"][-1]
    title = f"{group} ({len(g['datasets'])} datasets mixed)" if group == ALL else group
    lines = [
        f"{title}: {len(rec['seeds'])} seed(s); accuracy and speedup vs {fin} alone, 95% CI over samples"
        + (" [REPLAY]" if rec.get("mode") == "replay" else ""),
        f"{'row':<34}{'accuracy':>22}{'speedup':>22}{'p acc (Holm)':>14}{'p lat (Holm)':>14}",
    ]
    for r in g["rows"]:
        if r["ablation"] and not ablations:
            continue
        a = r["accuracy"]
        s = r["speedup"].get(fin)
        t = r["tests"].get("vs_final") or {}
        pa = t.get("accuracy", {}).get("p_holm")
        pl = t.get("latency", {}).get("p_holm")
        lines.append(
            f"{r['label'][:33]:<34}{_ci(a, 3):>22}{_ci(s, 2, 'x'):>22}"
            f"{'—' if pa is None else f'{pa:.3g}':>14}{'—' if pl is None else f'{pl:.3g}':>14}"
        )
    return "\n".join(lines)


def _ci(b: dict | None, nd: int, unit: str = "") -> str:
    if not b or b.get("mean") is None:
        return "—"
    lo, hi = b["ci_samples"]
    if lo is None or hi is None:
        return f"{b['mean']:.{nd}f}{unit}"
    return f"{b['mean']:.{nd}f}{unit} [{lo:.{nd}f}, {hi:.{nd}f}]"


def iter_rows(rec: dict, groups: Iterable[str] | None = None):
    for g, body in rec["groups"].items():
        if groups is None or g in groups:
            for r in body["rows"]:
                yield g, r
