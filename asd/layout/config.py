"""Config of a co-located layout — YAML section ``layout`` (configs/layout_*.yaml; docs/layout.md).

Each stage names a Qwen2.5 shape (``asd.models.shapes``; random weights) or gives its ``shape`` outright (tiny
test shapes), its tensor-parallel degree and the first rank of its block of ranks (one rank per device). Stages
may share ranks (co-location: all stay resident, one runs at a time). ``build_layers`` builds only that many
decoder layers of a stage that does not fit: it is timed at ``build_layers`` and ``build_layers // 2`` layers and
extrapolated to its full depth (labelled as such in every output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asd.config_loader import check_fields
from asd.models.shapes import known_shape

# Qwen2Config keys a stage's ``shape`` must give (the rest default to Qwen2.5's: rms_norm_eps 1e-6, rope_theta 1e6)
SHAPE_REQUIRED = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)
SHAPE_DEFAULTS = {"rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0}


@dataclass
class LayoutStage:
    """One stage of the layout."""

    name: str  # e.g. "7b"; the cost table's stage name
    model: str = ""  # a Qwen2.5 hub id (its published shape), e.g. Qwen/Qwen2.5-7B-Instruct
    shape: dict[str, float] | None = None  # Qwen2Config keys (SHAPE_REQUIRED), instead of / over model's shape
    tensor_parallel: int = 1  # ranks (devices) holding this stage's shards
    first_rank: int | None = None  # its ranks: first_rank .. first_rank + tensor_parallel - 1 (default: packed)
    build_layers: int | None = None  # None: full depth; N: N layers built, time extrapolated in depth

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.tensor_parallel < 1:
            raise ValueError(f"stage {self.name}: tensor_parallel must be >= 1, got {self.tensor_parallel}")
        if self.first_rank is not None and self.first_rank < 0:
            raise ValueError(f"stage {self.name}: first_rank must be >= 0, got {self.first_rank}")
        if self.build_layers is not None and self.build_layers < 2:
            raise ValueError(f"stage {self.name}: build_layers must be >= 2 (timed at N and N // 2 layers)")
        self.resolved_shape()  # fail at load time on an unknown model or an incomplete shape

    def resolved_shape(self) -> dict:
        """Qwen2Config kwargs of the stage (ints as ints); ValueError naming the stage when unknown."""
        base = known_shape(self.model) if self.model else None
        if base is None and self.shape is None:
            raise ValueError(
                f"stage {self.name}: model {self.model!r} has no known shape (Qwen/Qwen2.5-{{7B,14B,32B,72B}}"
                "[-Instruct]) and no shape is given"
            )
        out = dict(SHAPE_DEFAULTS, **(base or {}))
        for k, v in (self.shape or {}).items():
            out[k] = v if k in SHAPE_DEFAULTS else int(v)
        missing = [k for k in SHAPE_REQUIRED if k not in out]
        if missing:
            raise ValueError(f"stage {self.name}: shape lacks {', '.join(missing)}")
        if self.build_layers is not None and self.build_layers >= out["num_hidden_layers"]:
            raise ValueError(
                f"stage {self.name}: build_layers {self.build_layers} must be below its "
                f"{out['num_hidden_layers']} layers (leave it out to build the whole model)"
            )
        return out


@dataclass
class LayoutConfig:
    """The stages (smallest first, as in the hierarchy) and how the replay runs."""

    name: str  # e.g. "h200x8-qwen2.5"; names the outputs
    stages: list[LayoutStage]
    device: Literal["cuda", "cpu"] = "cuda"  # cuda: NCCL, one rank per GPU; cpu: gloo (tests)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    # a pass or decode step of B rows runs at the smallest of these ≥ B (one CUDA graph per size, as serving
    # engines pad to captured batch sizes); larger B runs as is
    batch_buckets: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64])
    token_bucket: int = 16  # verification passes and prefills are padded to a multiple of this many tokens
    replay_repeats: int = 3  # timed replays of every route file (after one untimed, which captures the graphs)
    attention: Literal["auto", "kernel", "sdpa"] = "auto"  # StaticDecoder's choice
    memory_reserve_gib: float = 6.0  # per device, beyond weights and KV cache (activations, graphs, NCCL)
    seed: int = 0  # random weights: seeded by (seed, rank)

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.stages) < 2:
            raise ValueError(f"a layout needs at least 2 stages, got {len(self.stages)}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if not self.batch_buckets or any(b < 1 for b in self.batch_buckets):
            raise ValueError(f"batch_buckets must be positive ints, got {self.batch_buckets}")
        self.batch_buckets = sorted(set(self.batch_buckets))
        if self.token_bucket < 1 or self.replay_repeats < 1 or self.memory_reserve_gib < 0:
            raise ValueError("token_bucket and replay_repeats must be >= 1, memory_reserve_gib >= 0")

    def ranks(self, world: int) -> list[list[int]]:
        """Each stage's ranks on a world of ``world`` ranks; ValueError when a stage does not fit.

        Stages without ``first_rank`` are packed in order after the previous stage's block (the 8-GPU
        reference: 7B on 0, 14B on 1, 32B on 2-3, 72B on 4-7)."""
        out, nxt = [], 0
        for s in self.stages:
            first = nxt if s.first_rank is None else s.first_rank
            block = list(range(first, first + s.tensor_parallel))
            if block[-1] >= world:
                raise ValueError(
                    f"stage {s.name}: ranks {block[0]}-{block[-1]} (tensor_parallel {s.tensor_parallel}) do not "
                    f"exist in a world of {world} rank(s); start torchrun with --nproc_per_node >= {block[-1] + 1} "
                    "or set first_rank"
                )
            out.append(block)
            nxt = block[-1] + 1
        return out
