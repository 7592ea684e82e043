"""Config of the evaluation grid — ``configs/evaluation.yaml`` section ``evaluation``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from asd.config_loader import check_fields

DATASETS = ("mmlu", "humaneval", "gsm8k", "truthfulqa")


@dataclass
class EvaluationConfig:
    lambdas: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 5.0, 10.0])  # dimensionless λ
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    kappa: float = 0.0  # risk adjustment: mean + κ·std over predictor draws
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    confidence: float = 0.95  # two-sided level of the reported intervals

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        bad = [x for x in self.lambdas if not (x >= 0 or math.isinf(x))]
        if bad or any(math.isnan(x) for x in self.lambdas):
            raise ValueError(f"lambdas must be >= 0 (inf allowed), got {self.lambdas}")
        if self.kappa < 0 or math.isnan(self.kappa):
            raise ValueError(f"kappa must be >= 0, got {self.kappa}")
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; valid: {list(DATASETS)}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
