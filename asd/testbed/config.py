"""Config dataclasses of the testbed: evaluation (section ``testbed``) and training (section ``training``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from asd.config_loader import check_fields


@dataclass
class TestbedConfig:
    """How the testbed hierarchy is evaluated (``asd testbed evaluate``)."""

    seed: int = 0  # seed of the held-out prompts
    n_per_cell: int = 100  # prompts per (task, level) cell: 4 tasks × 5 levels × 100 = 2,000
    sample_per_cell: int = 20  # the reproducibility sample: first 20 of every cell = 400 prompts
    max_new_tokens: int = 32  # every reference answer is ≤ 24 tokens + eos
    batch_size: int = 64  # prompts per generate() call
    device: str = "cpu"
    results: str = "docs/testbed_quality.json"

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.n_per_cell < 1 or not 0 < self.sample_per_cell <= self.n_per_cell:
            raise ValueError(f"need 0 < sample_per_cell <= n_per_cell, got {self.sample_per_cell}, {self.n_per_cell}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")


@dataclass
class ModelShape:
    """One Qwen2 model size (``Qwen2Config`` fields)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    lr: float  # peak AdamW learning rate
    steps: int | None = None  # this size's step budget (default: training.steps)
    batch_size: int | None = None  # this size's sequences per step (default: training.batch_size)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by heads {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")


@dataclass
class TrainingConfig:
    """Fixed-step training of every stage on the same seeded stream (``asd testbed train``)."""

    stages: dict[str, ModelShape] = field(default_factory=dict)  # stage name ("s0") → shape
    steps: int = 4000  # optimiser steps, the same for every size (a budget in steps, not time)
    batch_size: int = 256  # sequences per step
    warmup: int = 200  # linear warm-up steps, then cosine to 10% of the peak
    weight_decay: float = 0.01
    seed: int = 0
    max_len: int = 256  # tokens; longer training sequences are dropped (none are, by construction)
    device: str = "auto"  # "auto" → cuda if available
    log_every: int = 50
    out_dir: str = "runs/testbed"
    max_train_seconds: float = 0.0  # safety stop (0 = none); a stop is recorded in the log as stopped_at_step

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if not self.stages:
            raise ValueError("training.stages must name at least one stage")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
