"""Config of the evaluation grid (section ``evaluation``) and of one cell (section ``cell``); docs/evaluation.md.

``EvaluationConfig`` says what the grid holds: datasets × seeds × policies (with their λ, τ, depths) ×
ablations, how many prompts per dataset and seed, which cost table prices the decisions. The predictor is the
config's own ``predictor`` section (``asd.predictor.config.PredictorConfig``; ``asd.evaluation.predictors``).
``asd.evaluation.grid.expand`` turns it into cells. Each cell runs as its own jobs-layer run whose config
carries a ``cell`` section (``CellConfig``): what the job step needs beyond the hierarchy, cascade and policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from asd.config_loader import check_fields
from asd.testbed.tasks import LEVELS as TESTBED_LEVELS

DATASETS = ("gsm8k", "mmlu", "humaneval", "truthfulqa")  # testbed formats or the benchmarks of the same name
SOURCES = ("testbed", "benchmarks")
# policies of the grid (``lossless`` is the DP at λ = ∞; ``oracle`` is the labelled upper bound)
POLICIES = ("dp", "single", "fixed_depth", "threshold", "confidence", "speculative", "lossless", "random", "oracle")
FEATURE_ABLATIONS = ("no_hidden", "no_token_stats", "no_text")  # need the predictor's ablation checkpoints
ABLATIONS = ("kappa", "uniform_costs", "no_skips", "sampling", *FEATURE_ABLATIONS)
MODES = ("online", "replay")


INF = math.inf


def _check_lams(name: str, lams: list[float], allow_empty: bool = False) -> None:
    if not lams and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    bad = [x for x in lams if math.isnan(x) or x < 0]
    if bad:
        raise ValueError(f"{name}: every λ must be >= 0 or inf (no NaN), got {bad} in {lams}")
    if len(set(lams)) != len(lams):
        raise ValueError(f"{name}: repeated values in {lams}")


def _check_levels(levels: list[int]) -> None:
    bad = [v for v in levels if v not in TESTBED_LEVELS]
    if not levels or bad or len(set(levels)) != len(levels):
        raise ValueError(
            f"levels: distinct testbed levels, at least one; valid: {', '.join(map(str, TESTBED_LEVELS))}; got {levels}"
        )


def _check_taus(name: str, taus: list[float]) -> None:
    bad = [t for t in taus if not 0.0 <= t <= 1.0]  # NaN fails too
    if bad:
        raise ValueError(f"{name}: every τ must be in [0, 1], got {bad}")
    if len(set(taus)) != len(taus):
        raise ValueError(f"{name}: repeated values in {taus}")


@dataclass
class StandInConfig:
    """``asd evaluate --stand-in``: the plumbing run, a small hierarchy in place of the config's models.

    Everything else (datasets, prompts, policies, scoring, jobs) is the config's own; the run is labelled
    ``plumbing`` (its scores mean nothing). The overrides shrink the grid for CI and fit the stand-in's context.
    """

    hierarchy_from: str = "configs/testbed.yaml"  # a config whose `hierarchy` section stands in
    samples: int | None = None  # prompts per dataset and seed (None: the config's)
    seeds: list[int] | None = None
    lambdas: list[float] | None = None
    ablations: list[str] | None = None
    shards: int | None = None  # shards per cell (None: jobs.shards)
    max_new_tokens: int | None = None  # cap on every dataset's generation budget (the stand-in's context is short)
    max_prompt_tokens: int | None = None  # cap on a prompt's tokens (its last ones are kept): a cheaper CI run
    truncate_prompts: bool = True  # keep a prompt's last tokens when it does not fit the stand-in's context

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python


@dataclass
class EvaluationConfig:
    """YAML section ``evaluation``: the grid (docs/evaluation.md lists every field's role)."""

    output_dir: str = "runs/evaluation"  # the run folder: grid.json, cells/<id>/ (each a jobs-layer run)
    source: Literal["testbed", "benchmarks"] = "testbed"  # prompts: testbed formats, or the prepared benchmarks
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    samples: int = 200  # prompts per dataset and seed (sample ids 0..samples-1 in every cell of that seed)
    # testbed prompts: the difficulty levels drawn, sample i at levels[i % len(levels)] (all five: the study's mix)
    levels: list[int] = field(default_factory=lambda: list(TESTBED_LEVELS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    lambdas: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, math.inf])
    frontier_lambdas: list[float] = field(default_factory=list)  # extra finite λ of the dp cells only
    starts: list[int] = field(default_factory=lambda: [0])  # the dp cells' first stages (0: from the smallest)
    kappa: float = 0.5  # κ of the dp cells (risk aversion over the predictor's draws)
    ablation_kappa: float = 0.0  # κ of the "kappa" ablation (cells labelled kappa<value>, e.g. kappa0)
    taus: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9])  # threshold on r̂
    confidence_taus: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9])  # threshold on confidence
    fixed_depths: list[int] = field(default_factory=list)  # [] → every depth 1..K-1
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    ablations: list[str] = field(default_factory=lambda: ["kappa", "uniform_costs", "no_skips", "sampling"])
    ablation_lambdas: list[float] = field(default_factory=lambda: [1.0])  # λ of the ablation cells
    sampling_temperature: float = 0.7  # the "sampling" ablation's temperature
    speculative_gamma: int = 4  # lookahead of the two-model speculative baseline
    cost_model: str | None = None  # measured cost table (JSON, asd.costs_io); None → proxy (parameter counts)
    shards: int = 1  # shards per cell (array tasks per cell)
    # feature ablation (no_hidden | no_token_stats | no_text) → the predictor checkpoint retrained without those
    # features (asd train-predictor's ablations); "{seed}" in a path is replaced by the cell's seed
    ablation_checkpoints: dict[str, str] = field(default_factory=dict)
    replay_data: str | None = None  # --mode replay: full per-stage traces (generate-data format)
    truncate_prompts: bool = False  # keep a prompt's last tokens when it does not fit (else: an error)
    heldout_filter: str | None = None  # benchmarks: "module:function"(dataset, item) -> bool, items eligible
    stand_in: StandInConfig | None = None
    label: str | None = None  # e.g. "plumbing"; written to grid.json and every cell

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.source not in SOURCES:
            raise ValueError(f"source: unknown {self.source!r}; valid: {', '.join(SOURCES)}")
        if not self.datasets:
            raise ValueError("datasets must not be empty")
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"datasets: unknown dataset(s) {unknown}; valid: {', '.join(DATASETS)}")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets: repeated names in {self.datasets}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        _check_levels(self.levels)
        if self.source != "testbed" and self.levels != list(TESTBED_LEVELS):
            raise ValueError(f"levels: only testbed prompts have levels (source is {self.source!r}); leave it out")
        if not self.seeds or any(s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct integers >= 0, at least one, got {self.seeds}")
        _check_lams("lambdas", self.lambdas)
        _check_lams("ablation_lambdas", self.ablation_lambdas, allow_empty=not self.ablations)
        _check_lams("frontier_lambdas", self.frontier_lambdas, allow_empty=True)
        both = sorted(set(self.frontier_lambdas) & set(self.lambdas))
        if both or any(math.isinf(x) for x in self.frontier_lambdas):
            raise ValueError(
                f"frontier_lambdas: finite λ not already in lambdas (the dp cells' extra points), got {both or [INF]}"
            )
        if not self.starts or any(m < 0 for m in self.starts) or len(set(self.starts)) != len(self.starts):
            raise ValueError(f"starts must be distinct stages >= 0, at least one, got {self.starts}")
        if 0 not in self.starts:
            raise ValueError(
                f"starts must hold 0 (the cascade from the smallest stage: lossless, random, oracle and the"
                f" ablations start there), got {self.starts}"
            )
        for name in ("kappa", "ablation_kappa"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        _check_taus("taus", self.taus)
        _check_taus("confidence_taus", self.confidence_taus)
        if any(d < 1 for d in self.fixed_depths):
            raise ValueError(f"fixed_depths must be stages >= 1 (depth 0 is single s0), got {self.fixed_depths}")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ValueError(f"policies: unknown policy(ies) {unknown}; valid: {', '.join(POLICIES)}")
        if not self.policies:
            raise ValueError("policies must not be empty")
        unknown = [a for a in self.ablations if a not in ABLATIONS]
        if unknown:
            raise ValueError(f"ablations: unknown ablation(s) {unknown}; valid: {', '.join(ABLATIONS)}")
        if "random" in self.policies and "dp" not in self.policies:
            raise ValueError("policy 'random' draws from the DP's stop histogram: add 'dp' to policies")
        if not (self.sampling_temperature > 0 and math.isfinite(self.sampling_temperature)):
            raise ValueError(f"sampling_temperature must be > 0, got {self.sampling_temperature}")
        if self.speculative_gamma < 1:
            raise ValueError(f"speculative_gamma must be >= 1, got {self.speculative_gamma}")
        if self.shards < 1 or self.shards > self.samples:
            raise ValueError(f"shards must be in 1..samples ({self.samples}), got {self.shards}")
        if self.heldout_filter is not None and self.heldout_filter.count(":") != 1:
            raise ValueError(f"heldout_filter {self.heldout_filter!r} must be 'module:function'")
        bad = [k for k in self.ablation_checkpoints if k not in FEATURE_ABLATIONS]
        if bad:
            raise ValueError(f"ablation_checkpoints: unknown ablation(s) {bad}; valid: {', '.join(FEATURE_ABLATIONS)}")
        st = self.stand_in
        if st is not None:
            if st.samples is not None and st.samples < 1:
                raise ValueError(f"stand_in.samples must be >= 1, got {st.samples}")
            if st.lambdas is not None:
                _check_lams("stand_in.lambdas", st.lambdas)
            if st.ablations is not None and any(a not in ABLATIONS for a in st.ablations):
                raise ValueError(f"stand_in.ablations: valid: {', '.join(ABLATIONS)}; got {st.ablations}")
            for name in ("max_new_tokens", "max_prompt_tokens", "shards"):
                v = getattr(st, name)
                if v is not None and v < 1:
                    raise ValueError(f"stand_in.{name} must be >= 1, got {v}")

    def dataset_name(self, task: str) -> str:
        """The name a cell's traces carry: ``testbed/<task>`` for testbed prompts, else the benchmark's."""
        return f"testbed/{task}" if self.source == "testbed" else task


@dataclass
class CellConfig:
    """YAML section ``cell`` of one cell's config (written by ``asd evaluate``; read by the job steps)."""

    id: str
    dataset: str  # the traces' dataset name (testbed/<task> or the benchmark)
    task: str  # gsm8k | mmlu | humaneval | truthfulqa
    source: Literal["testbed", "benchmarks"] = "testbed"
    seed: int = 0  # the evaluation sample and the predictor's training seed
    policy: str = "dp"  # the grid's policy name (lossless = dp at λ = ∞)
    ablation: str | None = None
    mode: Literal["online", "replay"] = "online"
    label: str | None = None
    cost_model: str | None = None  # absolute path of the measured cost table, or None (proxy costs)
    uniform_costs: bool = False  # price every stage alike (the "uniform_costs" ablation)
    outcome_cells: list[str] = field(default_factory=list)  # oracle online: the K single-stage cells' traces
    replay_data: str | None = None
    truncate_prompts: bool = False
    max_prompt_tokens: int | None = None  # keep at most this many of a prompt's last tokens (stand-in runs)
    heldout_filter: str | None = None
    levels: list[int] = field(default_factory=lambda: list(TESTBED_LEVELS))  # testbed: sample i at levels[i % n]

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.task not in DATASETS:
            raise ValueError(f"task: unknown {self.task!r}; valid: {', '.join(DATASETS)}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy: unknown {self.policy!r}; valid: {', '.join(POLICIES)}")
        if self.mode == "replay" and not self.replay_data:
            raise ValueError("mode replay needs replay_data (the full per-stage traces)")
        _check_levels(self.levels)
