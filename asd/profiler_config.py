"""Config of the cost profiler — ``configs/cost_profiling.yaml`` section ``cost_profiling``."""

from __future__ import annotations

from dataclasses import dataclass, field

from asd.config_loader import check_fields

PREFILL_PATHS = ("graph", "eager")


@dataclass
class ProfilerConfig:
    prefill_tokens: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])  # prompt lengths
    decode_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 16, 32])
    decode_context: int = 512  # KV-cache length (tokens) at which decode steps are timed
    decode_steps: int = 32  # steps per timed measurement
    warmup: int = 3  # untimed repetitions
    repeats: int = 10  # timed repetitions; medians are fitted
    compile_blocks: bool = True  # torch.compile the element-wise blocks inside the CUDA graphs (GPU only)
    prefill_path: str = "graph"  # graph: one captured pass per length; eager: StaticDecoder.prefill, as engines run it

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        for name in ("prefill_tokens", "decode_batch_sizes"):
            vals = getattr(self, name)
            if not vals or any(v < 1 for v in vals):
                raise ValueError(f"{name} must be a non-empty list of positive ints, got {vals}")
        for name in ("decode_context", "decode_steps", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prefill_path not in PREFILL_PATHS:
            raise ValueError(f"prefill_path must be one of {list(PREFILL_PATHS)}, got {self.prefill_path!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
