"""The cells of an evaluation grid: ``expand(config, K, mode)`` (docs/evaluation.md#cells).

A cell is one (dataset, seed, policy with its parameters, ablation): one jobs-layer run over the seed's
prompts (sample ids 0..samples-1, the same in every cell of that seed and dataset, so that policies can be
compared pair by pair). Per dataset and seed the grid holds:

- ``dp`` at every finite λ of ``lambdas`` and of ``frontier_lambdas`` (κ = ``kappa``; the latter are extra
  points of the dp frontier only: no random or oracle cell), once per start stage of ``starts`` (default [0]:
  the cascade from stage 0; a start m > 0 generates first at m, with no cheaper draft); ``lossless``: the DP at
  λ = ∞ from stage 0 (when ``lambdas`` holds inf, or ``lossless`` is listed);
- ``single`` for every stage k; ``fixed_depth`` for every depth of ``fixed_depths`` (default 1..K-1);
  ``threshold`` (r̂ > τ) for every τ of ``taus``; ``confidence`` (mean top-1 probability ≥ τ, no predictor)
  for every τ of ``confidence_taus``; ``speculative`` (stage 0 → final, lookahead ``speculative_gamma``);
- ``random`` at every λ (incl. ∞), drawing final stages from the stop histogram of the dp (lossless) cell of
  the same dataset, seed and λ — so it runs in wave 2, after that cell;
- ``oracle`` at every λ (the labelled upper bound; ``upper_bound: true``): online, its outcomes come from
  the ``single`` cells of every stage (wave 2); in replay, from the full traces;
- ablations at every λ of ``ablation_lambdas`` (dp cells, λ = ∞ labelled lossless): ``kappa`` (κ =
  ``ablation_kappa``, named e.g. ``kappa0``), ``uniform_costs``, ``no_skips``, the feature ablations
  ``no_hidden`` / ``no_token_stats`` / ``no_text`` (the predictor's ablation checkpoints), ``sampling``
  (temperature ``sampling_temperature``, named e.g. ``sampling_t0.7``: the dp and lossless cells and the final
  stage alone, all sampled).

Cell ids: ``<dataset>--<policy>[-<parameter>][-start<m>]--seed<s>[--<ablation>]``, e.g.
``testbed-gsm8k--dp-lam0.5--seed0``, ``testbed-gsm8k--dp-lam1-start2--seed0``, ``mmlu--single-s3--seed2``,
``testbed-mmlu--lossless--seed0--no_skips``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from asd.evaluation.config import FEATURE_ABLATIONS, EvaluationConfig

INF = math.inf


def fmt(x: float) -> str:
    """A number in a cell id: ``0.5``, ``1``, ``inf``."""
    return "inf" if math.isinf(x) else f"{x:g}"


def lam_json(x: float | None) -> float | str | None:
    """λ as grid.json writes it: a float, the string "inf", or null."""
    if x is None:
        return None
    return "inf" if math.isinf(x) else float(x)


@dataclass(frozen=True)
class Cell:
    """One cell of the grid (see the module docstring)."""

    task: str  # gsm8k | mmlu | humaneval | truthfulqa
    dataset: str  # the traces' name: testbed/<task> or the benchmark
    policy: str  # asd.evaluation.config.POLICIES
    seed: int
    lam: float | None = None  # dp, lossless, random, oracle
    kappa: float = 0.0
    stage: int | None = None  # single: the model; fixed_depth: the depth
    tau: float | None = None  # threshold, confidence
    ablation: str | None = None
    temperature: float = 0.0
    skips: bool = True
    uniform_costs: bool = False
    hist_from: str | None = None  # random: the dp cell whose stop histogram it draws from
    outcome_from: tuple[str, ...] = field(default_factory=tuple)  # oracle online: single cells s0..s{K-1}
    start: int = 0  # dp: the stage that generates first (0: the cascade from the smallest stage)

    @property
    def wave(self) -> int:
        """1: runs at once; 2: needs cells of wave 1 (random: a histogram; oracle online: outcomes)."""
        return 2 if (self.hist_from or self.outcome_from) else 1

    @property
    def upper_bound(self) -> bool:
        return self.policy == "oracle"

    def param(self) -> tuple[str, str] | None:
        """The policy's parameter as (kind, text): ``("lam", "1")``, ``("stage", "3")``, ``("depth", "2")``,
        ``("tau", "0.7")``; None for a policy without one (or whose λ/τ is unset)."""
        if self.policy in ("dp", "random", "oracle"):
            return None if self.lam is None else ("lam", fmt(self.lam))
        if self.policy in ("single", "fixed_depth"):
            return ("stage" if self.policy == "single" else "depth", str(self.stage))
        if self.policy in ("threshold", "confidence"):
            return None if self.tau is None else ("tau", fmt(self.tau))
        return None

    @property
    def id(self) -> str:
        ds = self.dataset.replace("/", "-")
        p = self.param()
        par = "" if p is None else {"lam": "-lam", "stage": "-s", "depth": "-d", "tau": "-tau"}[p[0]] + p[1]
        if self.start:
            par += f"-start{self.start}"
        out = f"{ds}--{self.policy}{par}--seed{self.seed}"
        return out + (f"--{self.ablation}" if self.ablation else "")


def _dp(task: str, ds: str, seed: int, lam: float, kappa: float, **kw) -> Cell:
    """A dp cell, or the lossless one at λ = ∞."""
    return Cell(task, ds, "lossless" if math.isinf(lam) else "dp", seed, lam=lam, kappa=kappa, **kw)


def expand(ev: EvaluationConfig, K: int, mode: str = "online") -> tuple[list[Cell], list[str]]:
    """(cells, notes): every cell of the grid for a hierarchy of K stages; notes say what was left out and why."""
    pol = set(ev.policies)
    notes: list[str] = []
    depths = ev.fixed_depths or list(range(1, K))
    bad = [d for d in depths if d >= K]
    if bad:
        raise ValueError(f"fixed_depths {bad} out of range for K={K} stages; valid: 1..{K - 1}")
    if "oracle" in pol and mode == "online" and "single" not in pol:
        raise ValueError("policy 'oracle' (online) takes its outcomes from every stage alone: add 'single' to policies")
    bad = [m for m in ev.starts if m > K - 2]
    if bad:
        raise ValueError(
            f"starts {bad} out of range for K={K} stages; valid: 0..{K - 2} (a start at the last stage is single)"
        )
    lams = list(ev.lambdas)
    if "lossless" in pol and INF not in lams:
        lams.append(INF)
    ablations = list(ev.ablations)
    if mode == "replay" and "sampling" in ablations:
        ablations.remove("sampling")
        notes.append("ablation 'sampling' left out: replay reads greedy full traces (run it online)")
    cells: list[Cell] = []
    for task in ev.datasets:
        ds = ev.dataset_name(task)
        for seed in ev.seeds:
            dp_ids: dict[float, str] = {}
            for lam in lams:
                if math.isinf(lam) and not ({"dp", "lossless"} & pol):
                    continue
                if not math.isinf(lam) and "dp" not in pol:
                    continue
                c = _dp(task, ds, seed, lam, ev.kappa)
                cells.append(c)
                dp_ids[lam] = c.id
            if "dp" in pol:
                cells += [_dp(task, ds, seed, lam, ev.kappa) for lam in ev.frontier_lambdas]
                finite = [lam for lam in [*ev.lambdas, *ev.frontier_lambdas] if not math.isinf(lam)]
                cells += [_dp(task, ds, seed, lam, ev.kappa, start=m) for m in ev.starts if m for lam in finite]
            singles = []
            if "single" in pol:
                for k in range(K):
                    c = Cell(task, ds, "single", seed, stage=k)
                    cells.append(c)
                    singles.append(c.id)
            if "fixed_depth" in pol:
                cells += [Cell(task, ds, "fixed_depth", seed, stage=d) for d in depths]
            if "threshold" in pol:
                cells += [Cell(task, ds, "threshold", seed, tau=t) for t in ev.taus]
            if "confidence" in pol:
                cells += [Cell(task, ds, "confidence", seed, tau=t) for t in ev.confidence_taus]
            if "speculative" in pol:
                cells.append(Cell(task, ds, "speculative", seed))
            if "random" in pol:
                cells += [Cell(task, ds, "random", seed, lam=lam, hist_from=dp_ids[lam]) for lam in dp_ids]
            if "oracle" in pol:
                oc = tuple(singles) if mode == "online" else ()
                cells += [Cell(task, ds, "oracle", seed, lam=lam, outcome_from=oc) for lam in lams]
            for ab in ablations:
                cells += _ablation(ev, ab, task, ds, seed, K)
    ids = [c.id for c in cells]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate cell ids {sorted(dup)[:3]}"
    return cells, notes


def _ablation(ev: EvaluationConfig, ab: str, task: str, ds: str, seed: int, K: int) -> list[Cell]:
    lams = ev.ablation_lambdas
    if ab == "kappa":
        name = f"kappa{fmt(ev.ablation_kappa)}"
        return [_dp(task, ds, seed, lam, ev.ablation_kappa, ablation=name) for lam in lams]
    if ab == "uniform_costs":
        return [_dp(task, ds, seed, lam, ev.kappa, ablation=ab, uniform_costs=True) for lam in lams]
    if ab == "no_skips":
        return [_dp(task, ds, seed, lam, ev.kappa, ablation=ab, skips=False) for lam in lams]
    if ab in FEATURE_ABLATIONS:
        return [_dp(task, ds, seed, lam, ev.kappa, ablation=ab) for lam in lams]
    if ab == "sampling":
        t = ev.sampling_temperature
        name = f"sampling_t{fmt(t)}"
        out = [_dp(task, ds, seed, lam, ev.kappa, ablation=name, temperature=t) for lam in lams]
        if INF not in lams:
            out.append(_dp(task, ds, seed, INF, ev.kappa, ablation=name, temperature=t))
        out.append(Cell(task, ds, "single", seed, stage=K - 1, ablation=name, temperature=t))
        return out
    raise AssertionError(ab)  # EvaluationConfig validated the names
