"""Synthetic evaluation run folders in the format of the evaluation contract, written through asd.traces.

A K = 4 hierarchy is simulated per sample: a difficulty u ~ U(0, 1) fixes which stages agree with the final
one (o_k = u < q_k, nested), the final stage is right with probability ``final_acc`` and a disagreeing
stage with probability 0.15; stage k's tokens are the final ones where o_k, else a stage-specific variant.
A noisy predictor r̂ tracks o; stage 0's mean entropy falls and its mean top-1 probability rises with o_0.
Every policy of the grid routes the samples its way, and the calls of each batch are timed by a "true"
speed model (``TRUE_COSTS``: prefill per token and decode step per stage, 3 % log-normal noise): a
generate call, then verify calls grouped by target stage, round by round, as asd.cascade runs them.
``latency_s`` holds each call's time for all its members, ``batch_latency_s`` the sum plus a decision
overhead per round. Everything is seeded: the same arguments write the same files.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from pathlib import Path

import numpy as np

from asd.core.costs import CostModel, LinearFit, StageCost
from asd.core.features import FEATURE_NAMES
from asd.traces import STOP, TraceWriter

K = 4
# "true" speed of the synthetic stages: prefill seconds per token (slope, intercept), decode step (slope per
# row, intercept); stage 3 is the slowest by far, so that the cascade can be ~3x faster than it
TRUE_COSTS = CostModel(
    stages=tuple(
        StageCost(f"s{k}", LinearFit(p, pi), LinearFit(ds, di))
        for k, (p, pi, ds, di) in enumerate(
            [(2e-6, 1e-4, 2e-5, 6e-4), (5e-6, 2e-4, 4e-5, 1.2e-3), (1e-5, 4e-4, 8e-5, 2.5e-3), (4e-5, 1e-3, 3e-4, 9e-3)]
        )
    ),
    batch_size=1,
    provenance={"measured": {"stages": [{"name": f"s{k}", "devices": 1} for k in range(K)]}},
)
Q = np.array([0.55, 0.7, 0.85, 1.0])  # P(stage k agrees with the final stage)
ROUND_OVERHEAD_S = 2e-4
ENT, MAXP = FEATURE_NAMES.index("entropy_mean"), FEATURE_NAMES.index("maxprob_mean")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Truth:
    """Per-sample ground truth of one (dataset, seed): prompts, outputs per stage, scores, predictor."""

    def __init__(self, n: int, seed: int, final_acc: float, ds_index: int):
        rng = np.random.default_rng(1000 * seed + 17 * ds_index + 3)
        self.n = n
        self.ids = np.arange(n, dtype=np.int64) + 10_000 * ds_index
        self.prompt_len = rng.integers(60, 200, n).astype(np.int32)
        u = rng.random(n)
        self.o = u[:, None] < Q[None, :]  # [n, K] agrees with the final stage
        c3 = rng.random(n) < final_acc
        wrong = rng.random((n, K)) < 0.15
        self.correct = np.where(self.o, c3[:, None], wrong)  # [n, K]
        base = [rng.integers(3, 60, rng.integers(8, 30)).astype(np.int32) for _ in range(n)]
        self.tokens = [
            [
                b if self.o[i, k] else np.r_[b[: max(1, len(b) - 2 - k)], [90 + k] * (1 + k % 2)].astype(np.int32)
                for k in range(K)
            ]
            for i, b in enumerate(base)
        ]
        self.r = np.clip(_sigmoid(np.log(Q / (1.0001 - Q)) + 2.0 * (self.o - 0.5) + rng.normal(0, 0.7, (n, K))), 0, 1)
        self.r[:, K - 1] = 1.0
        self.entropy0 = 2.0 - 1.2 * self.o[:, 0] + rng.normal(0, 0.35, n)
        self.maxprob = np.clip(0.45 + 0.35 * self.o + rng.normal(0, 0.1, (n, K)), 0, 1)

    def route(
        self, policy: str, param, rng: np.random.Generator, hist=None, skips=True, start: int = 0
    ) -> list[list[int]]:
        """Stages each sample runs, in order (the last one returns the output); dp starts at ``start``."""
        out = []
        for i in range(self.n):
            r, o = self.r[i], self.o[i]
            if policy == "single":
                out.append([int(param)])
            elif policy == "fixed_depth":
                out.append(list(range(int(param) + 1)))
            elif policy in ("lossless", "speculative"):
                out.append([0, K - 1])
            elif policy == "threshold":
                out.append(self._walk(lambda k, r=r: r[k] > param))
            elif policy == "confidence":
                out.append(self._walk(lambda k, i=i: self.maxprob[i, k] >= param))
            elif policy == "dp":
                lam = float(param)
                stop = lambda k, r=r, lam=lam: lam * (1 - r[k]) < 0.35 * (K - 1 - k) / (K - 1)  # noqa: E731
                rt = [start]
                while not stop(rt[-1]) and rt[-1] < K - 1:
                    k = rt[-1]
                    rt.append(k + 1 if (not skips or r[k] > 0.3) else K - 1)
                out.append(rt)
            elif policy == "oracle":
                lam = float(param)  # λ = ∞: the final stage; else the cheapest agreeing stage (0 when λ is tiny)
                t = K - 1 if math.isinf(lam) else (int(np.argmax(o)) if lam > 0.4 else 0)
                out.append([0] if t == 0 else [0, t])
            elif policy == "random":
                t = int(rng.choice(K, p=hist))
                out.append([0] if t == 0 else [0, t])
            else:
                raise AssertionError(policy)
        return out

    @staticmethod
    def _walk(stop) -> list[int]:
        rt = [0]
        while rt[-1] < K - 1 and not stop(rt[-1]):
            rt.append(rt[-1] + 1)
        return rt


def simulate(truth: Truth, routes: list[list[int]], batch_size: int, rng: np.random.Generator, speculative=False):
    """Trace records of one cell: the batches' calls timed by TRUE_COSTS (see the module docstring)."""
    n = truth.n
    rec = {
        "sample_id": truth.ids.copy(),
        "dataset": None,
        "prompt_len": truth.prompt_len.copy(),
        "ran": np.zeros((n, K), bool),
        "draft_len": np.zeros((n, K), np.int32),
        "accepted_len": np.zeros((n, K), np.int32),
        "latency_s": np.zeros((n, K)),
        "decision": np.full((n, K), -2, np.int8),
        "predictions": np.full((n, K, K), np.nan, np.float32),
        "features": np.full((n, K, len(FEATURE_NAMES)), np.nan, np.float32),
        "final_stage": np.zeros(n, np.int8),
        "tokens": [],
        "score": np.zeros(n, np.float32),
        "batch_id": np.zeros(n, np.int64),
        "batch_latency_s": np.zeros(n),
    }
    noise = lambda: float(np.exp(rng.normal(0, 0.03)))  # noqa: E731
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(n, s + batch_size))
        total = 0.0
        B = idx.size
        for i in idx:
            rt = routes[i]
            rec["ran"][i, rt] = True
            for a, b in itertools.pairwise(rt):
                rec["decision"][i, a] = b
            rec["decision"][i, rt[-1]] = STOP
            rec["final_stage"][i] = rt[-1]
            for k in rt:
                rec["draft_len"][i, k] = len(truth.tokens[i][k])
                rec["features"][i, k, :] = 0.0
                rec["features"][i, k, 0] = k
                rec["features"][i, k, ENT] = truth.entropy0[i] if k == 0 else 1.0
                rec["features"][i, k, MAXP] = truth.maxprob[i, k]
                rec["predictions"][i, k, k:] = truth.r[i, k:]
            for a, b in itertools.pairwise(rt):
                same = np.array_equal(truth.tokens[i][a], truth.tokens[i][b])
                na = len(truth.tokens[i][a])
                rec["accepted_len"][i, b] = na if same else max(0, min(na, len(truth.tokens[i][b])) - 2)
        P = int(truth.prompt_len[idx].max())
        if speculative:
            st, d0 = TRUE_COSTS.stages[K - 1], TRUE_COSTS.stages[0]
            nmax = max(len(truth.tokens[i][K - 1]) for i in idx)
            t = (
                st.prefill(B * P) + math.ceil(nmax / 4) * st.step_s(B) + d0.prefill(B * P) + nmax * d0.step_s(B)
            ) * noise()
            for i in idx:
                rec["latency_s"][i, K - 1] = t
                rec["draft_len"][i, 0] = len(truth.tokens[i][K - 1])
            total += float(t)
        else:
            first = routes[idx[0]][0]
            st = TRUE_COSTS.stages[first]
            nmax = max(len(truth.tokens[i][first]) for i in idx)
            t = float((st.prefill(B * P) + (nmax - 1) * st.step_s(B)) * noise())
            rec["latency_s"][idx, first] = t
            total += t + ROUND_OVERHEAD_S
            pos = dict.fromkeys(idx, 0)  # index into each route
            while True:
                moves: dict[int, list[int]] = {}
                for i in idx:
                    if pos[i] + 1 < len(routes[i]):
                        moves.setdefault(routes[i][pos[i] + 1], []).append(i)
                if not moves:
                    break
                for m in sorted(moves):
                    mem = moves[m]
                    st = TRUE_COSTS.stages[m]
                    T = max(int(truth.prompt_len[i]) + len(truth.tokens[i][routes[i][pos[i]]]) for i in mem)
                    r = max(max(0, len(truth.tokens[i][m]) - int(rec["accepted_len"][i, m]) - 1) for i in mem)
                    t = float((st.prefill(len(mem) * T) + r * st.step_s(len(mem))) * noise())
                    rec["latency_s"][mem, m] = t
                    total += t
                    for i in mem:
                        pos[i] += 1
                total += ROUND_OVERHEAD_S
        rec["batch_id"][idx] = truth.ids[idx[0]]
        rec["batch_latency_s"][idx] = total
    for i in range(n):
        f = int(rec["final_stage"][i])
        rec["tokens"].append(truth.tokens[i][f])
        rec["score"][i] = float(truth.correct[i, f])
    return rec


DATASETS = ("testbed/gsm8k", "testbed/mmlu", "testbed/humaneval", "testbed/truthfulqa")
FINAL_ACC = {"testbed/gsm8k": 0.75, "testbed/mmlu": 0.8, "testbed/humaneval": 0.6, "testbed/truthfulqa": 0.7}


def fmt(x) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"


def cell_id(ds, policy, seed, lam=None, stage=None, tau=None, ablation=None, start=0) -> str:
    par = {
        "dp": lam,
        "random": lam,
        "oracle": lam,
        "single": stage,
        "fixed_depth": stage,
        "threshold": tau,
        "confidence": tau,
    }
    pre = {
        "dp": "-lam",
        "random": "-lam",
        "oracle": "-lam",
        "single": "-s",
        "fixed_depth": "-d",
        "threshold": "-tau",
        "confidence": "-tau",
    }
    p = f"{pre[policy]}{fmt(par[policy])}" if policy in par else ""
    p += f"-start{start}" if start else ""
    out = f"{ds.replace('/', '-')}--{policy}{p}--seed{seed}"
    return out + (f"--{ablation}" if ablation else "")


def write_run(
    root: Path,
    datasets=DATASETS,
    seeds=(0, 1, 2, 3, 4),
    n: int = 48,
    lambdas=(0.5, 1.0, 5.0),
    taus=(0.7,),
    batch_size: int = 8,
    ablations=("kappa0", "no_skips"),
    cost_model: CostModel | None = TRUE_COSTS,
    mode: str = "online",
    starts=(),
) -> Path:
    """Write a run folder (grid.json + cells/<id>/traces.h5) and return it."""
    root = Path(root)
    cells = []
    for di, ds in enumerate(datasets):
        for seed in seeds:
            truth = Truth(n, seed, FINAL_ACC.get(ds, 0.7), di)
            specs = []
            for lam in lambdas:
                specs.append({"policy": "dp", "lam": lam})
            specs.append({"policy": "lossless", "lam": math.inf})
            specs += [{"policy": "single", "stage": k} for k in range(K)]
            specs += [{"policy": "fixed_depth", "stage": d} for d in range(1, K)]
            specs += [{"policy": "threshold", "tau": t} for t in taus]
            specs += [{"policy": "confidence", "tau": t} for t in taus]
            specs.append({"policy": "speculative"})
            specs += [{"policy": "oracle", "lam": lam} for lam in (*lambdas, math.inf)]
            specs += [{"policy": "dp", "lam": 1.0, "ablation": a} for a in ablations]
            specs += [{"policy": "dp", "lam": lam, "start": m} for m in starts for lam in lambdas]
            hist = {}
            for sp in specs:
                rng = np.random.default_rng(zlib.crc32(f"{ds}|{seed}|{sorted(sp.items())}".encode()))
                pol = sp["policy"]
                param = sp.get("lam", sp.get("stage", sp.get("tau")))
                if pol == "dp" and sp.get("ablation") == "kappa0":
                    param = float(param) * 1.3
                routes = truth.route(pol, param, rng, skips=sp.get("ablation") != "no_skips", start=sp.get("start", 0))
                rec = simulate(truth, routes, batch_size, rng, speculative=pol == "speculative")
                cells.append((ds, seed, sp, rec))
                if pol in ("dp", "lossless") and not sp.get("ablation") and not sp.get("start"):
                    h = np.bincount(rec["final_stage"], minlength=K).astype(float)
                    hist[sp["lam"]] = h / h.sum()
            for lam, h in hist.items():
                rng = np.random.default_rng(seed * 31 + int(min(lam, 99) * 10))
                routes = truth.route("random", None, rng, hist=h)
                cells.append((ds, seed, {"policy": "random", "lam": lam}, simulate(truth, routes, batch_size, rng)))
    grid_cells = []
    for ds, seed, sp, rec in cells:
        cid = cell_id(
            ds, sp["policy"], seed, sp.get("lam"), sp.get("stage"), sp.get("tau"), sp.get("ablation"), sp.get("start", 0)
        )
        rel = f"cells/{cid}/traces.h5"
        rec["dataset"] = np.array([ds] * len(rec["sample_id"]), dtype=object)
        lam = sp.get("lam")
        attrs = {
            "seed": seed,
            "lam": lam,
            "models": [f"s{k}" for k in range(K)],
            "cost_model": cost_model.to_dict() if cost_model is not None else None,
            "config": {"cascade": {"batch_size": batch_size, "gamma": 4}},
        }
        if mode == "replay":
            attrs["mode"] = "replay"
        with TraceWriter(root / rel, K, FEATURE_NAMES, attrs=attrs) as w:
            w.append(rec)
        grid_cells.append(
            {
                "cell": cid,
                "dataset": ds,
                "policy": sp["policy"],
                "lam": None if lam is None else ("inf" if math.isinf(lam) else lam),
                "kappa": 0.0 if sp.get("ablation") == "kappa0" else 0.5,
                "stage": sp.get("stage"),
                "tau": sp.get("tau"),
                "seed": seed,
                "ablation": sp.get("ablation"),
                "batch_size": batch_size,
                "temperature": 0.0,
                "traces": rel,
                "upper_bound": sp["policy"] == "oracle",
                **({"start": sp["start"]} if "start" in sp else {}),
            }
        )
    grid = {
        "schema": "asd-eval-grid",
        "schema_version": 1,
        "config": {"evaluation": {"seeds": list(seeds), "lambdas": list(lambdas), "speculative_gamma": 4}},
        "git_revision": "synthetic",
        "mode": mode,
        "cells": grid_cells,
        "wall_time_s": 12.5,
        "cpu_hours": 0.01,
        "gpu_hours": None,
    }
    (root / "grid.json").write_text(json.dumps(grid, indent=1))
    return root
