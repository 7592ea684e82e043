"""The ``predictor_data`` config section: what ``asd generate-data`` generates (docs/predictor_data.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asd.config_loader import check_fields

SOURCES = ("testbed", "benchmarks")
BENCHMARK_TASKS = ("mmlu", "gsm8k", "humaneval", "truthfulqa")


@dataclass
class PredictorDataConfig:
    """Prompts, generation and engine settings of the training-set generator.

    The run's size, seed, sharding and batch (= the generation batch) are the ``jobs`` section's.
    """

    source: Literal["testbed", "benchmarks"] = "testbed"  # testbed predictor split | benchmarks' non-test splits
    tasks: list[str] = field(default_factory=lambda: ["gsm8k", "mmlu", "humaneval", "truthfulqa"])
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # testbed difficulty levels
    # testbed: false = every prompt distinct (finite cells stop at their count, the others take the rest);
    # true = every (task, level) cell gets the same number of samples, exhausted cells repeat their prompts
    repeats: bool = False
    max_new_tokens: int = 32  # every stage's budget per response, tokens
    fast: bool = False  # HFEngine(fast=True): the static-cache decoder (CUDA graphs on a GPU)
    device: str | None = None  # overrides hierarchy.device ("cuda", "cpu")
    dtype: str | None = None  # overrides every stage's dtype (hf backend: float32, bfloat16, float64, ...)
    data_dir: str = "data"  # benchmarks: where `asd data prepare` put the copies (docs/data.md)
    fewshot: bool = True  # benchmarks: the evaluation's few-shot prompts; false = zero-shot (small contexts)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
        if len(set(self.tasks)) != len(self.tasks) or len(set(self.levels)) != len(self.levels):
            raise ValueError(f"tasks and levels must not repeat, got {self.tasks} and {self.levels}")
        if self.source == "testbed":
            from asd.testbed.tasks import check_level, check_task

            for t in self.tasks:
                check_task(t)
            for lv in self.levels:
                check_level(lv)
            if not self.levels:
                raise ValueError("levels must name at least one level (1..5)")
        else:
            bad = [t for t in self.tasks if t not in BENCHMARK_TASKS]
            if bad:
                raise ValueError(f"unknown benchmark task(s) {bad}; valid: {', '.join(BENCHMARK_TASKS)}")
