"""The cost profiler (docs/algorithm.md#costs): per stage, prefill latency vs tokens and decode latency per step.

Measures on the real backend and hardware (torch; CUDA events on GPU, ``perf_counter`` on CPU), with
warm-up, repeats and medians. Decode steps run through the static-cache path of
``asd.models.cuda_graph`` (CUDA-graph replay on GPU) — the fast path the engine uses — and, optionally,
through transformers' eager forward with a DynamicCache (the launch-bound ceiling, for comparison).

The measurements (a plain dict, see ``profile_stage``) are turned into ``asd.core.costs.CostModel`` by
``fit_cost_model``; ``save_profile`` writes both with provenance as JSON.
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asd.profiler_config import ProfilerConfig

SCHEMA_VERSION = 1


# ---- timing --------------------------------------------------------------------------------------
def time_fn(
    fn: Callable[[], None], device, warmup: int, repeats: int, sync: Callable[[], None] | None = None
) -> list[float]:
    """Seconds per call of ``fn`` (repeats values): CUDA events on a GPU, perf_counter otherwise.

    ``sync`` runs untimed before each timed call (e.g. ``torch.distributed.barrier`` so that all ranks of a
    tensor-parallel step start together).
    """
    import torch

    for _ in range(warmup):
        fn()
    out = []
    cuda = getattr(device, "type", str(device)).startswith("cuda")
    for _ in range(repeats):
        if sync is not None:
            sync()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def copy_bandwidth(device, nbytes: int = 2 << 30, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth, bytes/s counting bytes read plus bytes written (median)."""
    import torch

    a = torch.randn(nbytes // 4, device=device, dtype=torch.float32)  # nbytes of random data, never zeros
    b = torch.empty_like(a)

    def copy() -> None:
        b.copy_(a)

    secs = time_fn(copy, device, warmup=3, repeats=repeats)
    moved = 2 * a.numel() * a.element_size()  # read once + written once
    return moved / statistics.median(secs)


# ---- models --------------------------------------------------------------------------------------
def build_model(spec: str, dtype: str, device: str, random_weights: bool, layers: int | None = None):
    """A ``Qwen2ForCausalLM`` for ``spec``: a Qwen2.5 id (random weights only), a folder, or ``testbed:<s>``.

    Random weights are built directly in ``dtype`` on ``device`` (an fp32-first build of 32B peaked at
    133 GB, docs/gpu.md "Measurement notes"); ``layers`` builds only that many decoder layers (random weights only).
    """
    import torch
    from transformers import Qwen2ForCausalLM

    tdtype = getattr(torch, dtype)
    path, cfg = stage_config(spec, random_weights)
    if cfg is None:
        model: Any = Qwen2ForCausalLM.from_pretrained(path, dtype=tdtype)
        return model.to(device).eval()
    if layers is not None:
        cfg.num_hidden_layers = int(layers)
        if hasattr(cfg, "layer_types") and cfg.layer_types is not None:
            cfg.layer_types = cfg.layer_types[: int(layers)]
    old = torch.get_default_dtype()
    torch.set_default_dtype(tdtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def stage_config(spec: str, random_weights: bool):
    """(path, config): config is None when ``spec`` is a folder of weights to load as they are."""
    from transformers import AutoConfig, Qwen2Config

    from asd.models.shapes import known_shape

    path = spec
    if spec.startswith("testbed:"):
        from asd.testbed.weights import resolve_model

        path = str(resolve_model(spec))
    if Path(path).is_dir():
        if not random_weights:
            return path, None
        cfg = AutoConfig.from_pretrained(path)
    else:
        shape = known_shape(spec)
        if shape is None:
            raise ValueError(
                f"model {spec!r}: not a folder, not testbed:<stage>, and no known shape "
                "(asd.models.shapes.QWEN25 has Qwen/Qwen2.5-{7B,14B,32B,72B}[-Instruct])"
            )
        if not random_weights:
            raise ValueError(f"model {spec!r}: no local weights; pass --random-weights to profile its shape")
        cfg = Qwen2Config(**shape)
    return path, cfg


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ---- measurements ----------------------------------------------------------------------------------
def measure_prefill(
    model,
    tokens: list[int],
    warmup: int,
    repeats: int,
    use_graphs: bool | None = None,
    compile_blocks: bool = False,
    layers: int | None = None,
    seed: int = 0,
    path: str = "graph",
) -> dict:
    """One pass over a prompt of n tokens (batch 1) from an empty cache, logits at every position (what
    a verification pass computes): seconds per pass. ``path`` "graph": a ``StaticDecoder.step`` over the n
    tokens (a graph per n on GPU); "eager": ``StaticDecoder.prefill`` (no graph), the pass the engines run.
    """
    import torch

    from asd.models.cuda_graph import StaticDecoder

    dec = StaticDecoder(
        model, max_batch=1, max_len=max(tokens), use_graphs=use_graphs, compile_blocks=compile_blocks, layers=layers
    )
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {
        "tokens": [],
        "seconds": [],
        "samples": [],
        "graphs": dec.use_graphs and path == "graph",
        "path": path,
        "compiled": compile_blocks,
        "layers": dec.n_layers,
    }

    for n in tokens:
        ids = torch.randint(0, model.config.vocab_size, (1, n), generator=g).to(dec.device)

        def run(ids=ids, n=n):
            if path == "eager":
                dec.prefill(ids, [n], all_logits=True)
            else:
                dec.set_lengths([0])
                dec.step(ids)

        secs = time_fn(run, dec.device, warmup, repeats)
        out["tokens"].append(n)
        out["seconds"].append(statistics.median(secs))
        out["samples"].append(secs)
    _free(dec)
    return out


def measure_decode(
    model,
    batch_sizes: list[int],
    context: int,
    steps: int,
    warmup: int,
    repeats: int,
    use_graphs: bool | None = None,
    compile_blocks: bool = False,
    layers: int | None = None,
    seed: int = 0,
    attention: str = "auto",
) -> dict:
    """Decode steps at each batch size with ``context`` tokens in the cache: seconds per step.
    ``attention``: StaticDecoder's (auto | kernel | sdpa); the one used is recorded."""
    import torch

    from asd.models.cuda_graph import StaticDecoder

    bmax = max(batch_sizes)
    dec = StaticDecoder(
        model,
        max_batch=bmax,
        max_len=context + steps,
        use_graphs=use_graphs,
        compile_blocks=compile_blocks,
        layers=layers,
        attention=attention,
    )
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (bmax, context), generator=g)
    dec.prefill(ids, [context] * bmax)
    out: dict[str, Any] = {
        "batch_sizes": [],
        "seconds_per_step": [],
        "samples": [],
        "graphs": dec.use_graphs,
        "compiled": compile_blocks,
        "layers": dec.n_layers,
        "attention": dec.attention,
    }
    for b in batch_sizes:
        tok = ids[:b, -1:].to(dec.device)

        def run(b=b, tok=tok):
            dec.set_lengths([context] * b)
            for _ in range(steps):
                dec.step(tok)

        secs = [s / steps for s in time_fn(run, dec.device, warmup, repeats)]
        out["batch_sizes"].append(b)
        out["seconds_per_step"].append(statistics.median(secs))
        out["samples"].append(secs)
    _free(dec)
    return out


def measure_hf_decode(
    model, batch_sizes: list[int], context: int, steps: int, warmup: int, repeats: int, seed: int = 0
) -> dict:
    """The same steps through transformers' eager forward and DynamicCache (the launch-bound ceiling)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    out: dict[str, Any] = {"batch_sizes": [], "seconds_per_step": [], "samples": []}
    for b in batch_sizes:
        ids = torch.randint(0, model.config.vocab_size, (b, context), generator=g).to(dev)
        with torch.no_grad():
            res = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache = getattr(res, "past_key_values", None) or res.cache
            tok = ids[:, -1:]

            def run(cache=cache, tok=tok):
                extra = cache.get_seq_length() - context
                if extra > 0:
                    cache.crop(-extra)  # negative = drop that many tokens (transformers 4.x and 5.x)
                for _ in range(steps):
                    model(input_ids=tok, past_key_values=cache, use_cache=True)

            secs = [s / steps for s in time_fn(run, dev, warmup, repeats)]
        del cache, res
        out["batch_sizes"].append(b)
        out["seconds_per_step"].append(statistics.median(secs))
        out["samples"].append(secs)
    return out


def profile_stage(
    model, cfg: ProfilerConfig, copy_bw: float | None = None, eager_batch_sizes: list[int] | None = None
) -> dict:
    """All measurements of one stage: weights, floor, prefill, decode (and the eager ceiling if asked)."""
    wb = weight_bytes(model)
    rec = {
        "params": sum(p.numel() for p in model.parameters()),
        "weight_bytes": wb,
        "floor_s": (wb / copy_bw) if copy_bw else None,  # one read of the weights at copy bandwidth
        # prefill is matrix-bound past a few hundred tokens. graph: no compiled blocks (fewer compiles);
        # eager: the engines' pass, with the decode path's compiled blocks
        "prefill": measure_prefill(
            model,
            cfg.prefill_tokens,
            cfg.warmup,
            cfg.repeats,
            compile_blocks=cfg.compile_blocks and cfg.prefill_path == "eager",
            path=cfg.prefill_path,
        ),
        "decode": measure_decode(
            model,
            cfg.decode_batch_sizes,
            cfg.decode_context,
            cfg.decode_steps,
            cfg.warmup,
            cfg.repeats,
            compile_blocks=cfg.compile_blocks,
        ),
    }
    if eager_batch_sizes:
        rec["eager_decode"] = measure_hf_decode(
            model, eager_batch_sizes, cfg.decode_context, max(2, cfg.decode_steps // 4), 1, max(2, cfg.repeats // 3)
        )
    return rec


def profile_stage_by_depth(
    model, full_layers: int, cfg: ProfilerConfig, copy_bw: float | None = None, short: int | None = None
) -> dict:
    """Profile a model too large for one device from a build with only its first L1 layers.

    Times L1 and L2 = ``short`` (default L1 // 2) layers and extrapolates every median linearly in
    depth (identical layers): t(L) = t(L1) + (t(L1) − t(L2)) / (L1 − L2) · (L − L1). The result is a
    single-device equivalent (not a tensor-parallel time), in ``profile_stage``'s format plus
    ``extrapolated: True`` and the two measured depths under ``depth``.
    """
    l1 = model.config.num_hidden_layers
    l2 = short or max(1, l1 // 2)
    assert 1 <= l2 < l1 <= full_layers, (l2, l1, full_layers)
    meas = {}
    for L in (l1, l2):
        meas[L] = {
            "prefill": measure_prefill(model, cfg.prefill_tokens, cfg.warmup, cfg.repeats, layers=L),
            "decode": measure_decode(
                model,
                cfg.decode_batch_sizes,
                cfg.decode_context,
                cfg.decode_steps,
                cfg.warmup,
                cfg.repeats,
                compile_blocks=cfg.compile_blocks,
                layers=L,
            ),
        }

    def extrap(a, b):
        return depth_extrapolate(a, b, l1, l2, full_layers)

    per_layer = sum(p.numel() * p.element_size() for p in model.model.layers[0].parameters())
    wb = weight_bytes(model) + per_layer * (full_layers - l1)
    p1, p2, d1, d2 = meas[l1]["prefill"], meas[l2]["prefill"], meas[l1]["decode"], meas[l2]["decode"]
    return {
        "params": None,
        "weight_bytes": wb,
        "floor_s": (wb / copy_bw) if copy_bw else None,
        "extrapolated": True,
        "prefill": {"tokens": p1["tokens"], "seconds": [extrap(a, b) for a, b in zip(p1["seconds"], p2["seconds"])]},
        "decode": {
            "batch_sizes": d1["batch_sizes"],
            "seconds_per_step": [extrap(a, b) for a, b in zip(d1["seconds_per_step"], d2["seconds_per_step"])],
        },
        "depth": {
            "layers_measured": [l1, l2],
            "full_layers": full_layers,
            "measured": {str(k): v for k, v in meas.items()},
        },
    }


def depth_extrapolate(t1: float, t2: float, l1: int, l2: int, full: int) -> float:
    """Seconds of a ``full``-layer model from times t1, t2 measured with its first l1 > l2 layers, linear in
    depth (identical layers): t(full) = t1 + (t1 − t2) / (l1 − l2) · (full − l1).
    Example: t1 = 3.0 s at 4 layers, t2 = 2.0 s at 2 layers → 6.0 s at 10 layers."""
    if not l1 > l2:
        raise ValueError(f"depth extrapolation needs l1 > l2, got l1={l1}, l2={l2}")
    return t1 + (t1 - t2) / (l1 - l2) * (full - l1)


def _layers_that_fit(config, dtype_bytes: int, free_bytes: int, reserve: float = 0.12) -> int | None:
    """Decoder layers of ``config`` that fit in ``free_bytes`` (keeping ``reserve`` of it free), or None
    if the whole model fits."""
    from asd.models.shapes import param_count

    shape = {
        k: getattr(config, k)
        for k in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
        )
    }
    shape["tie_word_embeddings"] = bool(getattr(config, "tie_word_embeddings", False))
    total = param_count(shape) * dtype_bytes
    budget = free_bytes * (1 - reserve)
    if total <= budget:
        return None
    layer = (
        param_count(dict(shape, num_hidden_layers=1)) - param_count(dict(shape, num_hidden_layers=0))
    ) * dtype_bytes
    n = int((budget - (total - layer * shape["num_hidden_layers"])) // layer)
    if n < 2:
        raise ValueError(f"not even 2 layers of this model fit in {free_bytes / 1e9:.1f} GB free device memory")
    return n


def profile_hierarchy(
    hierarchy, cfg: ProfilerConfig, random_weights: bool, device: str, eager_batch_sizes: list[int] | None = None
) -> dict:
    """Profile each stage in turn (one model in memory at a time); returns the JSON-able profile."""
    import torch
    from tqdm import tqdm

    from asd.config_loader import to_dict
    from asd.provenance import provenance

    dev = torch.device(device)
    bw = copy_bandwidth(dev) if dev.type == "cuda" else None
    stages = []
    for st in tqdm(hierarchy.stages, desc="profile", unit="stage"):
        if st.tensor_parallel_size > 1 and dev.type == "cuda" and torch.cuda.device_count() < st.tensor_parallel_size:
            tqdm.write(
                f"note: stage {st.name} runs tensor-parallel {st.tensor_parallel_size} on the cluster; "
                "profiled here on one device"
            )
        fit_layers = None
        if dev.type == "cuda" and random_weights:
            _, scfg = stage_config(st.model, True)
            fit_layers = _layers_that_fit(
                scfg, torch.empty((), dtype=getattr(torch, st.dtype)).element_size(), torch.cuda.mem_get_info(dev)[0]
            )
        model = build_model(st.model, st.dtype, device, random_weights, layers=fit_layers)
        base = {"name": st.name, "model": st.model, "dtype": st.dtype, "random_weights": random_weights, "devices": 1}
        if fit_layers is None:
            rec = {**base, **profile_stage(model, cfg, bw, eager_batch_sizes)}
        else:
            tqdm.write(
                f"note: stage {st.name} does not fit one device: {fit_layers} layers built, time "
                "extrapolated in depth (single-device equivalent)"
            )
            rec = {**base, **profile_stage_by_depth(model, scfg.num_hidden_layers, cfg, bw)}
        stages.append(rec)
        del model
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    out = {
        "schema_version": SCHEMA_VERSION,
        "copy_bandwidth_Bps": bw,
        "stages": stages,
        "provenance": provenance(
            config={"cost_profiling": to_dict(cfg), "hierarchy": to_dict(hierarchy)}, schema_version=SCHEMA_VERSION
        ),
    }
    return out


def _free(dec) -> None:
    import torch

    cuda = dec.device.type == "cuda"
    del dec
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


# ---- fit and files ------------------------------------------------------------------------------------
def stage_records(profile: dict) -> list[dict]:
    """The profile's stages in hierarchy order, depth-extrapolated ones (``profile["extrapolated"]``,
    from the device run scripts/gpu_decode.py) appended as ordinary records marked ``extrapolated: True``."""
    recs = [dict(r, extrapolated=bool(r.get("extrapolated", False))) for r in profile["stages"]]
    for name, r in profile.get("extrapolated", {}).items():
        recs.append(
            {
                "name": name,
                "extrapolated": True,
                "weight_bytes": r["weight_bytes"],
                "floor_s": r["floor_s"],
                "layers_measured": r["layers_measured"],
                "prefill": {"tokens": r["prefill_tokens"], "seconds": r["prefill_seconds"]},
                "decode": {"batch_sizes": r["batch_sizes"], "seconds_per_step": r["decode_seconds_per_step"]},
            }
        )
    return recs


def profile_card(profile: dict) -> str | None:
    """The GPU name a profile was measured on (its provenance), or None if it does not say."""
    return ((profile.get("provenance") or {}).get("environment") or {}).get("gpu")


def add_tensor_parallel(profile: dict, tp: dict, source: str = "") -> dict:
    """A copy of ``profile`` whose stage ``tp["args"]["size"]`` is the tensor-parallel measurement ``tp``.

    ``tp`` is what ``python -m asd.models.tensor_parallel --size ...`` writes (asd/models/tensor_parallel.py):
    ``world`` GPUs, ``device`` (card name), ``weight_bytes_per_rank``, ``copy_bandwidth_Bps``, ``decode {batch:
    s/step}``, ``prefill {tokens: s}`` (medians, wall clock). The stage replaces a measured or depth-extrapolated
    stage of the same name (the final one, 72B, in the reference hierarchy) and keeps hierarchy order; a stage the
    profile lacks is appended as the final one if it is larger than every stage there (a ValueError otherwise). Its
    times are wall clock with ``devices`` GPUs; ``floor_s`` is the per-GPU floor (bytes per rank / the run's copy
    bandwidth).
    Figures from different cards are never combined: a card mismatch is a ValueError naming both.
    """
    card, tp_card = profile_card(profile), tp.get("device")
    if card is None or tp_card is None or card != tp_card:
        raise ValueError(
            f"tensor-parallel run {source or ''} was measured on {tp_card!r}, the profile on {card!r}: "
            "figures from different cards are not combined; measure both on the same kind"
        )
    for key in ("world", "weight_bytes_per_rank", "copy_bandwidth_Bps", "decode", "prefill", "args"):
        if key not in tp:
            raise ValueError(
                f"tensor-parallel run {source}: missing field {key!r} (python -m asd.models.tensor_parallel output)"
            )
    name = tp["args"].get("size")
    names = [r["name"] for r in profile["stages"]] + list(profile.get("extrapolated", {}))
    world, per_rank = int(tp["world"]), int(tp["weight_bytes_per_rank"])
    if name not in names:  # a stage the profile lacks: only as the new final (largest) stage
        largest = max(stage_records(profile), key=lambda r: r["weight_bytes"])
        if per_rank * world <= largest["weight_bytes"]:
            raise ValueError(
                f"tensor-parallel run {source}: stage {name!r} not in the profile (stages: "
                f"{', '.join(names)}) and, at {per_rank * world / 1e9:.1f} GB, not larger than "
                f"{largest['name']!r} ({largest['weight_bytes'] / 1e9:.1f} GB): a new stage can only "
                "be the final one"
            )
    dec = sorted((int(b), float(v)) for b, v in tp["decode"].items())
    pre = sorted((int(n), float(v)) for n, v in tp["prefill"].items())
    rec = {
        "name": name,
        "devices": world,
        "tensor_parallel": world,
        "extrapolated": False,
        "weight_bytes": per_rank * world,
        "weight_bytes_per_device": per_rank,
        "floor_s": per_rank / float(tp["copy_bandwidth_Bps"]),
        "copy_bandwidth_Bps": tp["copy_bandwidth_Bps"],
        "prefill": {"tokens": [n for n, _ in pre], "seconds": [v for _, v in pre]},
        "decode": {"batch_sizes": [b for b, _ in dec], "seconds_per_step": [v for _, v in dec]},
        "graphs": tp.get("graphs"),
        "git_revision": tp.get("git_revision"),
        "created_utc": tp.get("created_utc"),
        "source": source,
    }
    out = dict(profile)
    out["stages"] = [rec if r["name"] == name else r for r in profile["stages"]]
    if name not in names:
        out["stages"] = out["stages"] + [rec]
    elif name in profile.get("extrapolated", {}):
        out["extrapolated"] = {k: v for k, v in profile["extrapolated"].items() if k != name}
        out["stages"] = out["stages"] + [rec]  # extrapolated stages come after the measured ones
    return out


def fit_cost_model(profile: dict, batch_size: int = 1):
    """``asd.core.costs.CostModel`` from a profile: per stage, a line through prefill seconds vs tokens and
    one through decode seconds/step vs batch size (residual spread kept); the measurement summary
    (card, versions, copy bandwidth, floors, eager ceiling) goes into its provenance under ``measured``.
    """
    from asd.core.costs import CostModel, LinearFit, StageCost

    stages, summary = [], []
    for r in stage_records(profile):
        pf, dc = r["prefill"], r["decode"]
        if len(set(pf["tokens"])) < 2:
            raise ValueError(
                f"stage {r['name']!r}: prefill measured at {len(set(pf['tokens']))} prompt length(s); "
                "a cost line needs at least 2 (a --quick profile cannot be fitted)"
            )
        if len(set(dc["batch_sizes"])) >= 2:
            decode = LinearFit.fit(dc["batch_sizes"], dc["seconds_per_step"])
        else:
            decode = LinearFit(0.0, float(dc["seconds_per_step"][0]), 0.0, 1)
        stages.append(StageCost(name=r["name"], prefill=LinearFit.fit(pf["tokens"], pf["seconds"]), decode=decode))
        row = {k: r[k] for k in ("name", "extrapolated", "weight_bytes", "floor_s", "devices") if k in r}
        row["decode_s_per_step"] = dict(zip(map(str, dc["batch_sizes"]), dc["seconds_per_step"]))
        row["prefill_s"] = dict(zip(map(str, pf["tokens"]), pf["seconds"]))
        for key in ("eager_decode", "decode_plain_graph", "decode_sdpa"):
            if key in r:
                row[key + "_s_per_step"] = dict(zip(map(str, r[key]["batch_sizes"]), r[key]["seconds_per_step"]))
        if r.get("extrapolated"):
            row["layers_measured"] = r["depth"]["layers_measured"] if "depth" in r else r["layers_measured"]
        summary.append(row)
    prov = profile.get("provenance", {})
    measured = {
        "environment": prov.get("environment"),
        "git_revision": prov.get("git_revision"),
        "created_utc": prov.get("created_utc"),
        "config": prov.get("config"),
        "copy_bandwidth_Bps": profile.get("copy_bandwidth_Bps"),
        "stages": summary,
    }
    return CostModel(stages=tuple(stages), batch_size=batch_size, provenance={"measured": measured})


def floor_ratios(model, profile: dict, batch_size: int = 1) -> list[dict]:
    """Per stage: decode-step cost relative to the final stage, measured vs weight bytes (bandwidth floor)."""
    recs = stage_records(profile)
    wb = [r["weight_bytes"] for r in recs]
    steps = [st.step_s(batch_size) for st in model.stages]
    dev = [int(r.get("devices") or 1) for r in recs]
    return [
        {
            "name": st.name,
            "measured": steps[i] / steps[-1],
            "floor": wb[i] / wb[-1],
            "rel_diff": (steps[i] / steps[-1]) / (wb[i] / wb[-1]) - 1.0,
            "measured_device_seconds": steps[i] * dev[i] / (steps[-1] * dev[-1]),
            "devices": dev[i],
        }
        for i, st in enumerate(model.stages)
    ]


def save_profile(profile: dict, path: str | Path) -> Path:
    """Write the profile (and its fitted cost model, when the fit is available) as JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(profile, indent=1, default=_json_default) + "\n")
    tmp.replace(p)
    return p


def load_profile(path: str | Path) -> dict:
    p = Path(path)
    data = json.loads(p.read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{p}: profile schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return data


def _json_default(o):
    if isinstance(o, float) and math.isnan(o):
        return None
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
