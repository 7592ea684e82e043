"""A realistic synthetic batch of predictor outputs and costs, for the demo and for benchmarks.

No model runs: the truth is a latent-difficulty model, the "predictor" is that truth seen through
noise, and the costs come from a :class:`~asd.core.costs.CostModel` built from per-stage latency
numbers (the demo config uses Qwen2.5-7B/14B/32B/72B-like ratios on A100s with tensor parallel 1/1/2/4).

Per input b (difficulty d_b ~ N(0, 1)):
- true logit of stage k: ``z_bk = skill_k − difficulty_slope · d_b``; ``r_true = sigmoid(z)``,
  ``r_true[:, K−1] = 1`` (the final stage matches itself);
- outcomes, coupled through one uniform u_b: ``o_bk = u_b < r_true_bk`` (a stage that matches
  makes every later stage match too);
- S predictor draws: ``r[b, s, k] = sigmoid(z_bk + e_b + ε_bsk)`` with a per-input predictor error
  ``e_b ~ N(0, predictor_noise)`` and draw spread ``ε ~ N(0, draw_spread)``, float32; ``r[:, :, K−1] = 1``;
- lengths: prompt and response lognormal around their medians; every stage's draft within ±10%;
- acceptance: ``â_{j,m} = sigmoid(accept_bias + accept_slope·logit(mean_s r_j) − accept_decay·(m − j − 1))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asd.config_loader import check_fields
from asd.core.costs import CostModel, LinearFit, StageCost, transition_costs


@dataclass
class StageLatency:
    """Latency numbers of one stage (milliseconds), turned into a StageCost by :func:`cost_model`."""

    name: str
    prefill_ms_per_token: float  # forward pass, per token (batch 1)
    prefill_ms: float  # forward pass, fixed part
    decode_ms_per_step: float  # decode step at batch 1 (memory-bound: ~weights / bandwidth)
    decode_ms_per_item: float  # extra ms per step for each further sequence in the batch
    overhead_ms: float = 0.0  # per call

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        for k in ("prefill_ms_per_token", "prefill_ms", "decode_ms_per_step", "decode_ms_per_item", "overhead_ms"):
            if not getattr(self, k) >= 0:
                raise ValueError(f"stage {self.name!r}: {k} must be >= 0, got {getattr(self, k)}")


def _default_stages() -> list[StageLatency]:
    return [
        StageLatency("7b", 0.07, 8.0, 14.0, 0.15, 2.0),
        StageLatency("14b", 0.13, 12.0, 24.0, 0.25, 2.0),
        StageLatency("32b", 0.16, 18.0, 32.0, 0.40, 3.0),
        StageLatency("72b", 0.22, 25.0, 45.0, 0.60, 4.0),
    ]


@dataclass
class SyntheticConfig:
    """YAML section ``synthetic``: the batch ``asd run`` (job ``synthetic``) generates and solves."""

    batch: int = 100_000  # B inputs
    draws: int = 8  # S predictor draws (ensemble members / MC-dropout passes)
    seed: int = 0
    lambdas: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, float("inf")])
    stages: list[StageLatency] = field(default_factory=_default_stages)
    batch_size: int = 8  # decode batch size the costs are evaluated at
    skill: list[float] = field(default_factory=lambda: [0.0, 0.8, 1.6])  # logits of stages 0..K−2
    difficulty_slope: float = 1.5
    predictor_noise: float = 0.5  # std of the per-input predictor error (logits)
    draw_spread: float = 0.3  # std across the S draws (logits)
    prompt_len_median: float = 300.0  # tokens
    response_len_median: float = 200.0  # tokens
    accept_bias: float = 0.5
    accept_slope: float = 0.8
    accept_decay: float = 0.3
    timing_repeats: int = 3  # C++ vs numpy timing: best of this many

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.batch < 1 or self.draws < 1:
            raise ValueError(f"batch and draws must be >= 1, got {self.batch}, {self.draws}")
        if len(self.stages) < 2:
            raise ValueError(f"stages: need at least 2, got {len(self.stages)}")
        if len(self.skill) != len(self.stages) - 1:
            raise ValueError(
                f"skill needs one logit per stage but the last ({len(self.stages) - 1}), got {len(self.skill)}"
            )
        if any(not (x >= 0) for x in self.lambdas) or not self.lambdas:
            raise ValueError(f"lambdas must be a non-empty list of values >= 0 (inf allowed), got {self.lambdas}")
        for k in ("predictor_noise", "draw_spread", "difficulty_slope", "accept_decay"):
            if not getattr(self, k) >= 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.prompt_len_median < 1 or self.response_len_median < 1:
            raise ValueError("prompt_len_median and response_len_median must be >= 1 token")
        if self.batch_size < 1 or self.timing_repeats < 1:
            raise ValueError("batch_size and timing_repeats must be >= 1")


def cost_model(stages: list[StageLatency], batch_size: int, provenance: dict | None = None) -> CostModel:
    """CostModel (seconds) from per-stage millisecond numbers."""
    out = []
    for s in stages:
        out.append(
            StageCost(
                name=s.name,
                prefill=LinearFit(s.prefill_ms_per_token / 1e3, s.prefill_ms / 1e3),
                decode=LinearFit(s.decode_ms_per_item / 1e3, (s.decode_ms_per_step - s.decode_ms_per_item) / 1e3),
                overhead_s=s.overhead_ms / 1e3,
            )
        )
    return CostModel(stages=tuple(out), batch_size=batch_size, provenance=provenance or {"source": "synthetic"})


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def generate(cfg: SyntheticConfig, model: CostModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One synthetic batch: a dict of arrays (B = cfg.batch, S = cfg.draws, K = stages).

    Keys: ``difficulty [B]``, ``r_true [B,K]`` f64, ``outcome [B,K]`` bool, ``r [B,S,K]`` f32,
    ``prompt_len [B]`` i64, ``draft_len [B,K]`` i64, ``accept_mean [B,K,K]`` f64,
    ``cost [B,K,K]`` f64 (inf where m <= j), ``draft_cost [B]`` f64 (stage 0's own run, normalised).
    """
    B, S, K = cfg.batch, cfg.draws, model.num_stages
    d = rng.standard_normal(B)
    z = np.asarray(cfg.skill)[None, :] - cfg.difficulty_slope * d[:, None]  # [B, K-1]
    r_true = np.concatenate([_sigmoid(z), np.ones((B, 1))], axis=1)  # [B, K]
    outcome = rng.random(B)[:, None] < r_true  # [B, K]
    zp = (
        z[:, None, :]
        + cfg.predictor_noise * rng.standard_normal((B, 1, 1))
        + cfg.draw_spread * rng.standard_normal((B, S, K - 1))
    )  # [B, S, K-1]
    r = np.ones((B, S, K), dtype=np.float32)
    r[:, :, : K - 1] = _sigmoid(zp)

    prompt_len = np.clip(np.round(cfg.prompt_len_median * np.exp(0.6 * rng.standard_normal(B))), 8, 8000)
    resp = cfg.response_len_median * np.exp(0.7 * rng.standard_normal(B))
    draft_len = np.clip(np.round(resp[:, None] * rng.uniform(0.9, 1.1, (B, K))), 1, 4096)

    rbar = np.clip(r.mean(axis=1, dtype=np.float64), 1e-6, 1 - 1e-6)  # [B, K]
    gap = np.arange(K)[None, :] - np.arange(K)[:, None] - 1  # [j, m]: m − j − 1
    logit = np.log(rbar / (1 - rbar))
    accept = _sigmoid(
        cfg.accept_bias + cfg.accept_slope * logit[:, :, None] - cfg.accept_decay * np.maximum(gap, 0)[None, :, :]
    )  # [B, K, K]
    prompt_len = prompt_len.astype(np.int64)
    draft_len = draft_len.astype(np.int64)
    cost = transition_costs(prompt_len, draft_len, accept, model)
    draft_cost = model.relative_latency(0, prompt_len, draft_len[:, 0])
    return {
        "difficulty": d,
        "r_true": r_true,
        "outcome": outcome,
        "r": r,
        "prompt_len": prompt_len,
        "draft_len": draft_len,
        "accept_mean": accept,
        "cost": cost,
        "draft_cost": draft_cost,
    }
