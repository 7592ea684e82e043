"""``asd models plan``: memory per stage and a tensor-parallel placement of a hierarchy on N GPUs.

Memory of stage s at tensor-parallel size t, per GPU (bytes)::

    weights_s / t  +  kv_s / min(t, kv_heads_s)          kv_s = B · L_s · 2 · layers · kv_heads · head_dim · dtype bytes

B = ``hierarchy.plan_batch_size`` (sequences held at once), L_s = the stage's ``max_model_len``: the KV cache a
stage needs when B sequences reach full length. Weights and KV heads split over the t GPUs (beyond
``kv_heads`` GPUs the KV heads are replicated). A GPU offers ``utilization × memory − reserve``
(``utilization`` as vLLM's ``gpu_memory_utilization``, 0.9; ``reserve`` for activations, CUDA context and
NCCL buffers, 2 GiB).

A placement gives each stage a TP size t (a power of two dividing its attention heads, compatible with its
KV heads) and an aligned block of t GPUs (GPUs b·t .. b·t+t−1, the NVLink-friendly groups vLLM uses). Stages
may share GPUs when their memory adds up (the cascade runs one stage at a time, but all stay resident).
Among placements that fit, the plan takes the one with (1) the fewest stages sharing a GPU, (2) the
smallest total TP (least all-reduce traffic), (3) the lowest peak memory on a GPU. On 8 × 80 GiB this is
the reference layout of ``configs/qwen2.5_models.yaml`` (TP 1/1/2/4, one stage per GPU group); on fewer
GPUs it packs stages together, or says why nothing fits and what would (a smaller batch, a shorter context).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from asd.models.config import HierarchyConfig, StageConfig
from asd.models.shapes import known_shape, param_count

GiB = 2**30
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
DEFAULT_UTILIZATION = 0.9
DEFAULT_RESERVE_GIB = 2.0


@dataclass
class StageMemory:
    """Memory of one stage: parameters, weight bytes, KV bytes per token and at B × L (all bytes)."""

    name: str
    model: str
    dtype: str
    params: int
    heads: int
    kv_heads: int
    weight_bytes: int
    kv_bytes_per_token: int
    batch: int
    tokens: int  # max_model_len
    configured_tp: int

    @property
    def kv_bytes(self) -> int:
        return self.batch * self.tokens * self.kv_bytes_per_token

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    def valid_tp(self, max_gpus: int) -> list[int]:
        """Powers of two ≤ ``max_gpus`` that divide the attention heads and fit the KV heads (vLLM's rule)."""
        out, t = [], 1
        while t <= max_gpus:
            if self.heads % t == 0 and (self.kv_heads % t == 0 or t % self.kv_heads == 0):
                out.append(t)
            t *= 2
        return out

    def per_gpu(self, tp: int) -> float:
        """Bytes on each of the ``tp`` GPUs."""
        return self.weight_bytes / tp + self.kv_bytes / min(tp, self.kv_heads)


def stage_shape(stage: StageConfig, storage: str | Path | None = None) -> dict:
    """config.json keys of a stage: from its folder (local, testbed, or ``storage``/<hub id>), else the
    published Qwen2.5 shape of its hub id; ValueError when neither is there."""
    from asd.models.verify import stage_folder

    try:
        folder = stage_folder(storage, stage)
    except ValueError:
        folder = None
    if folder is not None and (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text())
    shape = known_shape(stage.model)
    if shape is None:
        raise ValueError(
            f"stage {stage.name!r}: shape of {stage.model!r} unknown (no config.json at {folder}, not a Qwen2.5 "
            "hub id); pass --storage-path with the downloaded folders"
        )
    return shape


def stage_memory(stage: StageConfig, shape: dict, batch: int) -> StageMemory:
    heads, kv = shape["num_attention_heads"], shape["num_key_value_heads"]
    head_dim = shape.get("head_dim") or shape["hidden_size"] // heads
    nbytes = DTYPE_BYTES[stage.dtype]
    params = param_count(shape)
    return StageMemory(
        name=stage.name,
        model=stage.model,
        dtype=stage.dtype,
        params=params,
        heads=heads,
        kv_heads=kv,
        weight_bytes=params * nbytes,
        kv_bytes_per_token=2 * shape["num_hidden_layers"] * kv * head_dim * nbytes,
        batch=batch,
        tokens=stage.max_model_len,
        configured_tp=stage.tensor_parallel_size,
    )


@dataclass
class Placement:
    """Stage name → (TP size, first GPU); ``load`` [N] bytes per GPU."""

    gpus: int
    capacity: float  # bytes usable per GPU
    assign: dict[str, tuple[int, int]]
    load: list[float]

    def shared_stages(self) -> int:
        owners: dict[int, list[str]] = {}
        for name, (t, g0) in self.assign.items():
            for g in range(g0, g0 + t):
                owners.setdefault(g, []).append(name)
        return len({n for names in owners.values() if len(names) > 1 for n in names})

    def key(self) -> tuple:
        return (self.shared_stages(), sum(t for t, _ in self.assign.values()), max(self.load))


def place(stages: list[StageMemory], gpus: int, capacity: float) -> Placement | None:
    """The best placement (see the module docstring) of ``stages`` on ``gpus`` GPUs of ``capacity`` bytes,
    or None. Exhaustive over TP sizes and aligned blocks, pruned by memory and by symmetry: inside an aligned
    block of GPUs that is still empty the two halves are interchangeable, so a stage goes into its left half
    only (``_canonical``)."""
    order = sorted(stages, key=lambda s: -s.total_bytes)
    best: list[Placement | None] = [None]
    load = [0.0] * gpus
    assign: dict[str, tuple[int, int]] = {}

    def rec(i: int) -> None:
        if i == len(order):
            p = Placement(gpus, capacity, dict(assign), list(load))
            if best[0] is None or p.key() < best[0].key():
                best[0] = p
            return
        s = order[i]
        for t in s.valid_tp(gpus):
            need = s.per_gpu(t)
            if need > capacity:
                continue
            for g0 in range(0, gpus - t + 1, t):
                block = range(g0, g0 + t)
                if not _canonical(load, g0, t) or any(load[g] + need > capacity for g in block):
                    continue
                for g in block:
                    load[g] += need
                assign[s.name] = (t, g0)
                rec(i + 1)
                del assign[s.name]
                for g in block:
                    load[g] -= need
                if all(load[g] < 1e-6 for g in block):  # undo float drift so "empty" stays exact
                    for g in block:
                        load[g] = 0.0

    rec(0)
    return best[0]


def _canonical(load: list[float], g0: int, t: int) -> bool:
    """False when the block of ``t`` GPUs at ``g0`` lies in the right half of an aligned, still empty block
    of 2t, 4t, ... GPUs (one that fits on the node). Swapping the halves of an empty aligned block maps
    every aligned block to an aligned block and changes no load, so the left half gives the same best key.
    (Two empty blocks are not interchangeable in general: on 6 GPUs GPUs 4-5 lie in no block of 4, GPUs 0-1
    do.) ``load``: bytes per GPU, [gpus]."""
    size = 2 * t
    while size <= len(load):
        c0 = g0 // size * size
        if c0 + size > len(load):
            break  # no aligned block of this size (or larger) around g0 fits on the node
        if g0 >= c0 + size // 2 and all(load[g] == 0.0 for g in range(c0, c0 + size)):
            return False
        size *= 2
    return True


@dataclass
class Plan:
    stages: list[StageMemory]
    gpus: int
    gpu_mem_gib: float
    utilization: float
    reserve_gib: float
    placement: Placement | None
    why_not: list[str]
    alternatives: list[str]  # what would fit, when nothing does

    @property
    def capacity(self) -> float:
        return self.gpu_mem_gib * GiB * self.utilization - self.reserve_gib * GiB

    def to_dict(self) -> dict:
        return {
            "gpus": self.gpus,
            "gpu_mem_gib": self.gpu_mem_gib,
            "utilization": self.utilization,
            "reserve_gib": self.reserve_gib,
            "capacity_gib": self.capacity / GiB,
            "stages": [
                {
                    "name": s.name,
                    "model": s.model,
                    "dtype": s.dtype,
                    "params": s.params,
                    "weights_gib": s.weight_bytes / GiB,
                    "kv_bytes_per_token": s.kv_bytes_per_token,
                    "batch": s.batch,
                    "tokens": s.tokens,
                    "kv_gib": s.kv_bytes / GiB,
                    "total_gib": s.total_bytes / GiB,
                    "tp": self.placement.assign[s.name][0] if self.placement else None,
                    "first_gpu": self.placement.assign[s.name][1] if self.placement else None,
                    "per_gpu_gib": s.per_gpu(self.placement.assign[s.name][0]) / GiB if self.placement else None,
                    "configured_tp": s.configured_tp,
                }
                for s in self.stages
            ],
            "fits": self.placement is not None,
            "gpu_load_gib": [x / GiB for x in self.placement.load] if self.placement else None,
            "why_not": self.why_not,
            "alternatives": self.alternatives,
        }


def plan(
    hier: HierarchyConfig,
    gpus: int,
    gpu_mem_gib: float,
    *,
    batch: int | None = None,
    utilization: float = DEFAULT_UTILIZATION,
    reserve_gib: float = DEFAULT_RESERVE_GIB,
    storage: str | Path | None = None,
) -> Plan:
    """Memory per stage and the best placement on ``gpus`` × ``gpu_mem_gib`` GiB; ValueError on bad input."""
    if gpus < 1:
        raise ValueError(f"--gpus must be >= 1, got {gpus}")
    if not gpu_mem_gib > 0:
        raise ValueError(f"--gpu-mem must be > 0 (GiB per GPU), got {gpu_mem_gib}")
    if not 0 < utilization <= 1:
        raise ValueError(f"--utilization must be in (0, 1], got {utilization}")
    if reserve_gib < 0:
        raise ValueError(f"--reserve-gb must be >= 0, got {reserve_gib}")
    B = hier.plan_batch_size if batch is None else batch
    if B < 1:
        raise ValueError(f"--batch must be >= 1, got {B}")
    shapes = [stage_shape(st, storage) for st in hier.stages]
    mems = [stage_memory(st, sh, B) for st, sh in zip(hier.stages, shapes)]
    p = Plan(mems, gpus, gpu_mem_gib, utilization, reserve_gib, None, [], [])
    cap = p.capacity
    if cap <= 0:
        raise ValueError(f"nothing usable per GPU: {utilization} × {gpu_mem_gib} GiB − {reserve_gib} GiB reserve <= 0")
    p.placement = place(mems, gpus, cap)
    if p.placement is None:
        p.why_not, p.alternatives = _why_not(mems, gpus, cap), _alternatives(hier, shapes, gpus, cap, B)
    return p


def _why_not(mems: list[StageMemory], gpus: int, cap: float) -> list[str]:
    out = []
    for s in mems:
        tps = s.valid_tp(gpus)
        if not tps or s.per_gpu(tps[-1]) > cap:
            t = tps[-1] if tps else 1
            out.append(
                f"stage {s.name} alone needs {s.per_gpu(t) / GiB:.1f} GiB per GPU even at TP {t} "
                f"(weights {s.weight_bytes / GiB:.1f} GiB + KV {s.kv_bytes / GiB:.1f} GiB), "
                f"more than {cap / GiB:.1f} GiB"
            )
    total = sum(s.total_bytes for s in mems)
    if total > gpus * cap:
        w = sum(s.weight_bytes for s in mems)
        out.append(
            f"the stages need {total / GiB:.1f} GiB together (weights {w / GiB:.1f} GiB + KV cache "
            f"{(total - w) / GiB:.1f} GiB at batch {mems[0].batch} × max_model_len), {gpus} GPU(s) offer "
            f"{gpus} × {cap / GiB:.1f} = {gpus * cap / GiB:.1f} GiB"
        )
    if not out:
        out.append(
            f"the stages need {total / GiB:.1f} GiB of {gpus * cap / GiB:.1f} GiB, but no assignment of whole "
            "stages to aligned tensor-parallel GPU groups fits (each stage's share must fit on every GPU of its group)"
        )
    return out


def _alternatives(hier: HierarchyConfig, shapes: list[dict], gpus: int, cap: float, B: int) -> list[str]:
    """The largest batch (at the configured lengths), and the longest common context (at batch B), that fit."""
    out = []

    def fits(batch: int, tokens: int | None) -> Placement | None:
        mems = [stage_memory(st, sh, batch) for st, sh in zip(hier.stages, shapes)]
        if tokens is not None:
            for m in mems:
                m.tokens = min(m.tokens, tokens)
        return place(mems, gpus, cap)

    b = B - 1
    while b >= 1 and fits(b, None) is None:
        b -= 1
    if b >= 1:
        p = fits(b, None)
        assert p is not None
        out.append(f"batch {b} (instead of {B}) fits: " + _layout(p))
    longest = max(st.max_model_len for st in hier.stages)
    step = 256 if longest > 256 else 1  # contexts in whole 256-token steps (readable, and vLLM-block aligned)
    lo, hi = 0, (longest - 1) // step  # binary search on a common context cap, in steps
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(B, mid * step) is not None:
            lo = mid
        else:
            hi = mid - 1
    if lo >= 1:
        p = fits(B, lo * step)
        assert p is not None
        out.append(f"max_model_len {lo * step} (instead of {longest}) at batch {B} fits: " + _layout(p))
    if not out:
        out.append("even batch 1 does not fit: the weights alone are too large for these GPUs")
    return out


def _layout(p: Placement) -> str:
    return ", ".join(f"{n} TP {t} on GPU {_gpus(g0, t)}" for n, (t, g0) in p.assign.items())


def _gpus(g0: int, t: int) -> str:
    return str(g0) if t == 1 else f"{g0}-{g0 + t - 1}"


def format_plan(p: Plan, hier_name: str) -> str:
    B = p.stages[0].batch
    lines = [
        f"hierarchy {hier_name}: {len(p.stages)} stages; KV cache for batch {B} × max_model_len tokens",
        f"GPUs: {p.gpus} × {p.gpu_mem_gib:g} GiB; usable per GPU {p.capacity / GiB:.1f} GiB "
        f"({p.utilization:g} × {p.gpu_mem_gib:g} GiB − {p.reserve_gib:g} GiB reserve)",
        "",
        f"{'stage':>6} {'params':>9} {'dtype':>9} {'weights':>10} {'KV/token':>9} {'KV cache':>18} {'total':>10}"
        f" {'TP':>3} {'per GPU':>10}",
    ]
    for s in p.stages:
        tp = p.placement.assign[s.name][0] if p.placement else None
        per = f"{s.per_gpu(tp) / GiB:8.1f} G" if tp else "         —"
        kv = f"{s.kv_bytes / GiB:.1f} G ({s.batch}×{s.tokens})"
        lines.append(
            f"{s.name:>6} {s.params / 1e9:8.2f}B {s.dtype:>9} {s.weight_bytes / GiB:8.1f} G "
            f"{s.kv_bytes_per_token / 1024:7.0f} K {kv:>18} {s.total_bytes / GiB:8.1f} G {tp or '—':>3} {per}"
        )
    lines.append("")
    if p.placement is None:
        lines.append(f"no placement fits {p.gpus} × {p.gpu_mem_gib:g} GiB:")
        lines.extend(f"  - {w}" for w in p.why_not)
        lines.append("what would fit:")
        lines.extend(f"  - {a}" for a in p.alternatives)
        return "\n".join(lines)
    pl = p.placement
    used = sorted({g for t, g0 in pl.assign.values() for g in range(g0, g0 + t)})
    lines.append(f"placement on {len(used)} of {p.gpus} GPU(s) ({pl.shared_stages()} stage(s) share a GPU):")
    for name, (t, g0) in sorted(pl.assign.items(), key=lambda kv: kv[1][1]):
        lines.append(f"  GPU {_gpus(g0, t):<6} {name:>6}  TP {t}")
    lines.append("  load per GPU (GiB): " + ", ".join(f"{x / GiB:.1f}" for x in pl.load))
    tps = [pl.assign[s.name][0] for s in p.stages]
    conf = [s.configured_tp for s in p.stages]
    same = "matches" if tps == conf else "differs from"
    lines.append(f"tensor-parallel sizes {'/'.join(map(str, tps))} ({same} the config's {'/'.join(map(str, conf))})")
    return "\n".join(lines)
