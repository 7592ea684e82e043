"""Config of a model hierarchy (the stages of the cascade).

Used by ``configs/qwen2.5_models.yaml`` and ``configs/testbed.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from asd.config_loader import check_fields

DTYPES = ("bfloat16", "float16", "float32")
BACKENDS = ("hf", "vllm")


@dataclass
class StageConfig:
    """One stage M_k of the hierarchy."""

    name: str  # short label, e.g. "7b"
    model: str  # HF model id or local checkpoint folder ("testbed:s0" for embedded weights)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    tensor_parallel_size: int = 1  # GPUs this stage occupies (vLLM TP / transformers tp_plan)
    max_model_len: int = 4096  # context length the engine allocates for (tokens)
    revision: str | None = None  # Hub commit the weights are pinned to (asd models download); None: local/testbed

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")


@dataclass
class HierarchyConfig:
    """The ordered stages (smallest first) and where they run."""

    name: str
    stages: list[StageConfig]
    backend: Literal["hf", "vllm"] = "hf"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" (hf backend)
    gpus_per_node: int = 8  # node layout on the cluster (8×A100-80GB)
    tokenizer: str | None = None  # shared tokenizer; default: the first stage's
    plan_batch_size: int = 8  # sequences of max_model_len tokens whose KV cache each stage holds (asd models plan)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if len(self.stages) < 2:
            raise ValueError(f"a hierarchy needs at least 2 stages, got {len(self.stages)}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.plan_batch_size < 1:
            raise ValueError(f"plan_batch_size must be >= 1, got {self.plan_batch_size}")
        too_big = [s.name for s in self.stages if s.tensor_parallel_size > self.gpus_per_node]
        if too_big:
            raise ValueError(f"stages {too_big} need more GPUs than gpus_per_node={self.gpus_per_node}")

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def stage_index(self, name_or_index: str | int) -> int:
        """Resolve a stage by name or index; ValueError listing the valid stages otherwise."""
        names = [s.name for s in self.stages]
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            if 0 <= name_or_index < len(names):
                return name_or_index
        elif name_or_index in names:
            return names.index(name_or_index)
        raise ValueError(f"unknown stage {name_or_index!r}; valid: {names} or 0..{len(names) - 1}")

    def total_gpus(self) -> int:
        return sum(s.tensor_parallel_size for s in self.stages)
