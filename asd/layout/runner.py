"""The co-located layout runner: every stage resident at once, per-stage costs measured, recorded calls replayed.

One torch.distributed world of N ranks (one per device; NCCL on CUDA, gloo on CPU), or a single process without
a world when N = 1. Each stage owns a block of ranks (``LayoutConfig.ranks``) and a sub-group of them; each rank
builds the shards of every stage it belongs to (``asd.models.tensor_parallel.TPDecoder``, random weights) before
anything is timed, so every measurement runs with all stages resident. Rank 0 is the driver:

1. **memory**: weights + KV cache per rank estimated from the shapes and checked against each device before any
   build (a layout that cannot fit stops with the figures); after the builds, what each device holds.
2. **per-stage costs**: one stage at a time (the others idle, resident), its ranks time verification passes
   (batch 1, n tokens, argmax at every position) and decode steps (batch b, ``decode_context`` tokens in the
   cache) as ``asd profile`` does (``ProfilerConfig``; median of ``repeats`` after ``warmup``; a barrier of the
   stage's ranks before each timed call). A stage built with ``build_layers`` is timed at that depth and half of
   it and extrapolated (``asd.profiler.depth_extrapolate``). The records are fitted with
   ``asd.profiler.fit_cost_model`` and written as a cost table (``asd.costs_io``) with the raw measurements.
3. **replay**: for every route file, the recorded cascade's calls (``asd.layout.schedule.cascade_calls``) and the
   final stage alone's (``alone_calls``) run in order: the call's stage runs its pass and decode steps (each step
   fed the previous step's argmax, on the device), then the stage's leader hands its last tokens to every rank
   (one all-reduce of a few integers over the world: the next call's input) and the driver reads the clock. A call
   of a depth-extrapolated stage runs at both depths and is extrapolated. One untimed replay (graph captures,
   compiles), then ``replay_repeats`` timed ones; medians. Passes and decode steps of B rows run at the smallest
   of ``batch_buckets`` ≥ B, passes padded to ``token_bucket`` tokens (one CUDA graph per shape, shared memory
   pool per device).

Everything runs under ``torch.no_grad``. Shapes: token ids [rows, tokens] int64 on each rank's device, the same
on every rank (seeded); outputs argmax [rows, keep] int64.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

from asd.layout.config import LayoutConfig
from asd.layout.schedule import Call, alone_calls, bucket, call_summary, cascade_calls
from asd.profiler_config import ProfilerConfig

SCHEMA_VERSION = 1
GiB = 2**30


def _slots(n: int) -> int:
    return -(-n // 64) * 64


def _round(n: int, m: int) -> int:
    return -(-n // m) * m


class World:
    """Rank, size and collectives of the run: torch.distributed when started by torchrun, else one process."""

    def __init__(self, device: str) -> None:
        import torch

        self.dist = None
        self.rank, self.size, local = 0, 1, 0
        if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            dist.init_process_group("nccl" if device == "cuda" else "gloo")
            self.dist, self.rank, self.size = dist, dist.get_rank(), dist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", self.rank))
        if device == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("layout.device is cuda but no CUDA device is visible (device: cpu runs on gloo)")
            self.device = torch.device(f"cuda:{local}")
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")

    def barrier(self, group: Any = None) -> None:
        if self.dist is not None:
            self.dist.barrier(group=group)

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), on every rank."""
        if self.dist is None:
            return [obj]
        out: list[Any] = [None] * self.size
        self.dist.all_gather_object(out, obj)
        return out

    def new_group(self, ranks: list[int]) -> Any:
        """A sub-group (every rank must call this for every group, in the same order)."""
        if self.dist is None or len(ranks) == 1:
            return None
        return self.dist.new_group(ranks)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class _Clock:
    """Elapsed seconds between marks on this rank's device: CUDA events (no host sync until read) or perf_counter."""

    def __init__(self, device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self):
        import torch

        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        if self.cuda:
            b.synchronize()
            return a.elapsed_time(b) / 1e3
        return b - a


def plan_geometry(layout: LayoutConfig, prof: ProfilerConfig, calls: list[Call]) -> dict:
    """Cache geometries (rows, slots) the run uses: the profile's decode and prefill and the replay's; the KV
    capacity (row × slot cells) each decoder needs is the largest of them."""
    dec = (max(prof.decode_batch_sizes), _slots(prof.decode_context + prof.decode_steps))
    pre = (1, _slots(max(prof.prefill_tokens)))
    rows = max((bucket(c.rows, layout.batch_buckets) for c in calls), default=1)
    slots = max((max(_round(c.tokens, layout.token_bucket), c.context + c.decode_steps + 1) for c in calls), default=64)
    rep = (rows, _slots(slots))
    return {"decode": dec, "prefill": pre, "replay": rep, "kv_tokens": max(a * b for a, b in (dec, pre, rep))}


def memory_estimate(layout: LayoutConfig, ranks: list[list[int]], world: int, kv_tokens: int) -> list[dict]:
    """Per rank: the stages it holds and the bytes of their weights and KV caches (before anything is built)."""
    from asd.models.placement import DTYPE_BYTES
    from asd.models.tensor_parallel import kv_bytes, shard_bytes

    nb = DTYPE_BYTES[layout.dtype]
    out = []
    for r in range(world):
        held = [(s, blk) for s, blk in zip(layout.stages, ranks) if r in blk]
        w = sum(shard_bytes(s.resolved_shape(), s.tensor_parallel, s.build_layers, nb) for s, _ in held)
        kv = sum(kv_bytes(s.resolved_shape(), s.tensor_parallel, kv_tokens, s.build_layers, nb) for s, _ in held)
        out.append({"rank": r, "stages": [s.name for s, _ in held], "weight_bytes": w, "kv_bytes": kv})
    return out


def run_layout(
    layout: LayoutConfig,
    prof: ProfilerConfig,
    route_sets: list[tuple[str, dict]],
    out_dir: str | Path,
    *,
    profile: bool = True,
    log=print,
) -> dict | None:
    """Build the layout, measure, replay; rank 0 writes ``<out_dir>/<name>.json`` (cost table),
    ``<name>.measurements.json`` and ``<name>.layout.json`` (the record) and returns the record (other ranks
    return None). ``route_sets``: (label, route file content) pairs. ValueError before any build when the layout
    does not fit the world or the devices."""
    import torch

    from asd.config_loader import to_dict

    t_start = time.time()
    world = World(layout.device)
    rank, dev = world.rank, world.device
    say = log if rank == 0 else (lambda *a, **k: None)
    ranks = layout.ranks(world.size)
    K = len(layout.stages)
    from asd.models.tensor_parallel import TPDecoder, check_shardable

    for s in layout.stages:
        check_shardable(s.resolved_shape(), s.tensor_parallel)
    schedules = []
    for label, routes in route_sets:
        if len(routes["stages"]) != K:
            raise ValueError(f"route file {label}: {len(routes['stages'])} stages, the layout has {K}")
        schedules.append((label, routes, cascade_calls(routes), alone_calls(routes, K - 1)))
    all_calls = [c for _, _, a, b in schedules for c in a + b]
    geo = plan_geometry(layout, prof, all_calls)
    mem_plan = memory_estimate(layout, ranks, world.size, geo["kv_tokens"])
    if dev.type == "cuda":
        total = torch.cuda.mem_get_info(dev)[1]
        need = mem_plan[rank]["weight_bytes"] + mem_plan[rank]["kv_bytes"] + layout.memory_reserve_gib * GiB
        fits = world.gather((rank, need, total))
        bad = [(r, n, t) for r, n, t in fits if n > t]
        if bad:
            raise ValueError(
                "the layout does not fit: "
                + "; ".join(
                    f"rank {r} ({', '.join(mem_plan[r]['stages'])}) needs {n / GiB:.1f} GiB "
                    f"(weights {mem_plan[r]['weight_bytes'] / GiB:.1f} + KV {mem_plan[r]['kv_bytes'] / GiB:.1f} + "
                    f"reserve {layout.memory_reserve_gib:g}), the device has {t / GiB:.1f} GiB"
                    for r, n, t in bad
                )
                + " (set build_layers on the largest stage, or spread it over more ranks)"
            )
    groups = [world.new_group(blk) for blk in ranks]  # every rank, every group, same order
    dtype = getattr(torch, layout.dtype)
    pool = torch.cuda.graph_pool_handle() if dev.type == "cuda" else None
    decs: dict[int, Any] = {}
    with torch.no_grad():
        for k, (s, blk) in enumerate(zip(layout.stages, ranks)):
            if rank in blk:
                t0 = time.time()
                decs[k] = TPDecoder(
                    s.resolved_shape(),
                    blk.index(rank),
                    len(blk),
                    geo["replay"][0],
                    geo["replay"][1],
                    dtype,
                    dev,
                    group=groups[k],
                    layers=s.build_layers,
                    kv_tokens=geo["kv_tokens"],
                    compile_blocks=prof.compile_blocks,
                    attention=layout.attention,
                    seed=layout.seed + 7919 * k,
                    pool=pool,
                )
                if blk.index(rank) == 0:
                    log(f"[rank {rank}] built {s.name} (TP {len(blk)} on ranks {blk}) in {time.time() - t0:.1f} s")
        for k, blk in enumerate(ranks):  # each stage's communicator set up eagerly, before any graph capture
            if groups[k] is not None and rank in blk and world.dist is not None:
                world.dist.all_reduce(torch.zeros(1, device=dev), group=groups[k])
        world.sync()
        world.barrier()
        memory_built = world.gather(_memory(dev, [layout.stages[k].name for k in decs], mem_plan[rank]))
        say(f"built every stage in {time.time() - t_start:.1f} s; memory per rank (GiB): " + _mem_line(memory_built))
        bw = None
        if dev.type == "cuda":
            from asd.profiler import copy_bandwidth

            bw = copy_bandwidth(dev, nbytes=1 << 30)
            gc.collect()
            torch.cuda.empty_cache()  # its 2 GiB back to the device: graph pools cannot reuse the allocator's cache
        bws = world.gather(bw)
        out_dir = Path(out_dir)
        rec: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "label": route_sets[0][1]["label"] if route_sets else None,
            "layout": {
                "name": layout.name,
                "world": world.size,
                "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "stages": [
                    {
                        "name": s.name,
                        "model": s.model,
                        "tensor_parallel": s.tensor_parallel,
                        "ranks": blk,
                        "build_layers": s.build_layers,
                        "full_layers": s.resolved_shape()["num_hidden_layers"],
                        "depth_extrapolated": s.build_layers is not None,
                    }
                    for s, blk in zip(layout.stages, ranks)
                ],
                "geometry": geo,
            },
            "memory": {"estimate": mem_plan, "after_build": memory_built},
            "copy_bandwidth_Bps": bws,
        }
        cfg = {"layout": to_dict(layout), "cost_profiling": to_dict(prof)}
        if profile:
            t0 = time.time()
            stages = _profile_stages(layout, prof, ranks, groups, decs, geo, world, bws, log)
            costs = _write_costs(layout, stages, bws[0], cfg, out_dir) if rank == 0 else None
            rec["profile"] = {"stages": costs, "seconds": time.time() - t0}
            say(f"per-stage costs measured in {time.time() - t0:.1f} s")
            if rank == 0:
                _write_record(
                    rec, cfg, out_dir / f"{layout.name}.layout.json", t_start
                )  # kept if a replay is cut short
        rec["replays"] = []
        for label, routes, calls, alone in schedules:
            t0 = time.time()
            rep = {
                "routes": label,
                "source": routes.get("source", {}).get("traces"),
                "source_git_revision": routes.get("source", {}).get("git_revision"),
                "decision_mix": routes.get("decision_mix"),
                "samples": len(routes["samples"]["sample_id"]),
                "work": {"cascade": call_summary(calls, K), "alone": call_summary(alone, K)},
                "cascade": _replay(layout, ranks, decs, calls, geo, world, f"{label}: cascade"),
                "alone": _replay(layout, ranks, decs, alone, geo, world, f"{label}: {layout.stages[-1].name} alone"),
            }
            if rank == 0:
                c, a = rep["cascade"]["seconds"], rep["alone"]["seconds"]
                rep["speedup_vs_alone"] = a / c if c > 0 else None
                say(
                    f"{label}: cascade {c:.3f} s, {layout.stages[-1].name} alone {a:.3f} s "
                    f"({rep['speedup_vs_alone']:.2f}x) in {time.time() - t0:.1f} s"
                )
            rec["replays"].append(rep)
            if rank == 0:
                _write_record(rec, cfg, out_dir / f"{layout.name}.layout.json", t_start)
        world.sync()
        rec["memory"]["peak"] = world.gather(_memory(dev, [layout.stages[k].name for k in decs], None, peak=True))
    if rank == 0:
        rec["complete"] = True
        say(f"wrote {_write_record(rec, cfg, out_dir / f'{layout.name}.layout.json', t_start)}")
    world.barrier()
    return rec if rank == 0 else None


def _write_record(rec: dict, cfg: dict, path: Path, t_start: float) -> Path:
    """Write the layout record as it stands (atomic), with its provenance; ``complete`` only at the end."""
    import json

    from asd.provenance import provenance

    rec["seconds"] = time.time() - t_start
    rec["provenance"] = provenance(config=cfg, schema_version=SCHEMA_VERSION)
    rec.setdefault("complete", False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)
    return path


def _memory(dev, stages: list[str], plan: dict | None, peak: bool = False) -> dict:
    import torch

    out: dict[str, Any] = {"stages": stages}
    if plan is not None:
        out["estimate_bytes"] = plan["weight_bytes"] + plan["kv_bytes"]
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        out.update(
            allocated_bytes=torch.cuda.max_memory_allocated(dev) if peak else torch.cuda.memory_allocated(dev),
            reserved_bytes=torch.cuda.max_memory_reserved(dev) if peak else torch.cuda.memory_reserved(dev),
            used_bytes=total - free,
            total_bytes=total,
        )
    else:
        import resource

        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _mem_line(mems: list[dict]) -> str:
    key = "used_bytes" if "used_bytes" in mems[0] else "peak_rss_bytes"
    return ", ".join(f"{i}: {m[key] / GiB:.1f} ({'+'.join(m['stages']) or '-'})" for i, m in enumerate(mems))


# ---- per-stage costs ------------------------------------------------------------------------------------------
def _ids(n_rows: int, n_tok: int, vocab: int, seed: int, device):
    """The same random token ids on every rank ([n_rows, n_tok] int64 on ``device``)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n_rows, n_tok), generator=g).to(device)


def _measure(dec, prof: ProfilerConfig, geo: dict, sync) -> dict:
    """Verification passes at batch 1 and decode steps per batch size on this rank (every rank of the stage
    runs the same calls)."""
    from asd.profiler import time_fn

    dev = dec.device
    out: dict[str, Any] = {
        "prefill": {"tokens": [], "seconds": [], "samples": []},
        "decode": {"batch_sizes": [], "seconds_per_step": [], "samples": []},
        "layers": dec.run_layers,
    }
    dec.resize(*geo["decode"])
    bmax, ctx, steps = max(prof.decode_batch_sizes), prof.decode_context, prof.decode_steps
    ids = _ids(bmax, 1, dec.vocab, 1, dev)
    for b in prof.decode_batch_sizes:

        def run(b=b) -> None:
            dec.set_lengths(ctx, b)
            tok = ids[:b]
            for _ in range(steps):
                tok = dec.step(tok)

        secs = [s / steps for s in time_fn(run, dev, prof.warmup, prof.repeats, sync=sync)]
        out["decode"]["batch_sizes"].append(b)
        out["decode"]["seconds_per_step"].append(statistics.median(secs))
        out["decode"]["samples"].append(secs)
    dec.resize(*geo["prefill"])
    for n in prof.prefill_tokens:
        pid = _ids(1, n, dec.vocab, 2 + n, dev)

        def run_p(pid=pid, n=n) -> None:
            dec.prefill(pid, [n], keep=n)

        secs = time_fn(run_p, dev, prof.warmup, prof.repeats, sync=sync)
        out["prefill"]["tokens"].append(n)
        out["prefill"]["seconds"].append(statistics.median(secs))
        out["prefill"]["samples"].append(secs)
    dec.resize(*geo["replay"])
    return out


def _profile_stages(layout, prof, ranks, groups, decs, geo, world, bws, log=print) -> list[dict]:
    """One record per stage (``asd.profiler`` profile format), measured one stage at a time; on every rank."""
    from asd.models.tensor_parallel import shard_bytes
    from asd.profiler import depth_extrapolate

    mine = []
    for k, (s, blk) in enumerate(zip(layout.stages, ranks)):
        if world.rank in blk:
            dec = decs[k]
            sync = (lambda g=groups[k]: world.barrier(g)) if len(blk) > 1 else None
            shape = s.resolved_shape()
            full = shape["num_hidden_layers"]
            per_dev = shard_bytes(shape, len(blk), None, dec.embed.element_size())
            bw = bws[blk[0]]
            rec: dict[str, Any] = {
                "name": s.name,
                "model": s.model,
                "dtype": layout.dtype,
                "random_weights": True,
                "devices": len(blk),
                "tensor_parallel": len(blk),
                "ranks": blk,
                "weight_bytes": per_dev * len(blk),
                "weight_bytes_per_device": per_dev,
                "floor_s": per_dev / bw if bw else None,
                "graphs": dec.device.type == "cuda",
                "compiled": prof.compile_blocks and dec.device.type == "cuda",
                "extrapolated": s.build_layers is not None,
            }
            if s.build_layers is None:
                rec.update(_measure(dec, prof, geo, sync))
            else:
                l1, l2 = dec.n_layers, dec.n_layers // 2
                meas = {}
                for L in (l1, l2):
                    dec.run_layers = L
                    meas[L] = _measure(dec, prof, geo, sync)
                dec.run_layers = l1
                p1, p2, d1, d2 = meas[l1]["prefill"], meas[l2]["prefill"], meas[l1]["decode"], meas[l2]["decode"]
                rec["prefill"] = {
                    "tokens": p1["tokens"],
                    "seconds": [depth_extrapolate(a, b, l1, l2, full) for a, b in zip(p1["seconds"], p2["seconds"])],
                }
                rec["decode"] = {
                    "batch_sizes": d1["batch_sizes"],
                    "seconds_per_step": [
                        depth_extrapolate(a, b, l1, l2, full)
                        for a, b in zip(d1["seconds_per_step"], d2["seconds_per_step"])
                    ],
                }
                rec["depth"] = {
                    "layers_measured": [l1, l2],
                    "full_layers": full,
                    "measured": {str(L): v for L, v in meas.items()},
                }
            if blk.index(world.rank) == 0:
                mine.append(rec)
                d = rec["decode"]["seconds_per_step"]
                log(
                    f"[rank {world.rank}] {s.name}: decode {d[0] * 1e3:.2f}-{d[-1] * 1e3:.2f} ms/step at batch "
                    f"{rec['decode']['batch_sizes'][0]}-{rec['decode']['batch_sizes'][-1]}"
                    + (" (depth-extrapolated)" if rec["extrapolated"] else "")
                )
        world.barrier()  # one stage at a time; the others idle, resident
    recs = [r for part in world.gather(mine) for r in part]
    order = {s.name: i for i, s in enumerate(layout.stages)}
    return sorted(recs, key=lambda r: order[r["name"]])


def _write_costs(layout, stages: list[dict], bw, cfg: dict, out_dir: Path) -> list[dict]:
    """The cost table (``asd.costs_io``) and its raw measurements, written by the driver; returns a summary."""
    from asd.costs_io import save_cost_model
    from asd.profiler import SCHEMA_VERSION as PROFILE_SCHEMA
    from asd.profiler import fit_cost_model, floor_ratios, save_profile
    from asd.provenance import provenance

    profile = {
        "schema_version": PROFILE_SCHEMA,
        "copy_bandwidth_Bps": bw,
        "stages": stages,
        "co_located": True,
        "provenance": provenance(config=cfg, schema_version=PROFILE_SCHEMA),
    }
    model = fit_cost_model(profile)
    raw = save_profile(profile, out_dir / f"{layout.name}.measurements.json")
    save_cost_model(model, out_dir / f"{layout.name}.json", measurements_file=raw.name, co_located=True)
    ratios = floor_ratios(model, profile)
    return [
        {
            "name": r["name"],
            "devices": r["devices"],
            "extrapolated": r["extrapolated"],
            "decode_s_per_step": dict(zip(map(str, r["decode"]["batch_sizes"]), r["decode"]["seconds_per_step"])),
            "prefill_s": dict(zip(map(str, r["prefill"]["tokens"]), r["prefill"]["seconds"])),
            "floor_s": r["floor_s"],
            "ratio_to_final": q["measured"],
            "floor_ratio_to_final": q["floor"],
        }
        for r, q in zip(stages, ratios)
    ]


# ---- replay ---------------------------------------------------------------------------------------------------
def _run_call(dec, c: Call, layout: LayoutConfig, ids, clock) -> tuple[Any, float, float]:
    """One call on this rank: the pass, then the decode segments → (last tokens [rows'], pass s, decode s)."""
    R = bucket(c.rows, layout.batch_buckets)
    T = _round(c.tokens, layout.token_bucket)
    keep = min(T, _round(c.keep, 8))
    m0 = clock.mark()
    tok = dec.prefill(ids[:R, :T], [c.context] * R, keep=keep)[:, -1:]  # [R,1] argmax at the last position
    m1 = clock.mark()
    for b, n in c.segments:
        x = tok[: bucket(b, layout.batch_buckets)]
        for _ in range(n):
            x = dec.step(x)
        tok = x
    m2 = clock.mark()
    return tok[:, 0], clock.seconds(m0, m1), clock.seconds(m1, m2)


def _replay(layout, ranks, decs, calls: list[Call], geo, world, desc: str) -> dict:
    """Replay ``calls`` once untimed, then ``replay_repeats`` times timed; the driver's record (None elsewhere)."""
    import torch
    from tqdm import tqdm

    rank, dev = world.rank, world.device
    clock = _Clock(dev)
    rows, slots = geo["replay"]
    vocab = {k: d.vocab for k, d in decs.items()}
    ids = {k: _ids(rows, slots, v, 3, dev) for k, v in vocab.items()}
    hand = torch.zeros(rows, dtype=torch.long, device=dev)
    passes = []
    for rep in range(layout.replay_repeats + 1):
        per_call: list[dict] = []
        inner: list[tuple[int, int, float, float]] = []  # (call, depth, pass s, decode s) on stage leaders
        t_pass = time.perf_counter()
        bar = tqdm(
            calls,
            desc=f"{desc} {'warm-up' if rep == 0 else f'{rep}/{layout.replay_repeats}'}",
            unit="call",
            disable=rank != 0,
            mininterval=10.0,  # a device run's log is a file: a line every 10 s at most, with rate and ETA
        )
        for i, c in enumerate(bar):
            s, blk = layout.stages[c.stage], ranks[c.stage]
            times = []
            for j in range(1 if s.build_layers is None else 2):  # a depth-extrapolated stage: full build, half
                t0 = time.perf_counter()
                if rank in blk:
                    dec = decs[c.stage]
                    if s.build_layers is not None:
                        dec.run_layers = dec.n_layers if j == 0 else dec.n_layers // 2
                    tok, tp, td = _run_call(dec, c, layout, ids[c.stage], clock)
                    if blk.index(rank) == 0:
                        inner.append((i, j, tp, td))
                    hand.zero_()
                    if blk.index(rank) == 0:
                        hand[: tok.numel()] = tok
                else:
                    hand.zero_()
                if world.dist is not None:
                    world.dist.all_reduce(hand)  # the handoff: the next call's input, from this call's leader
                world.sync()
                times.append(time.perf_counter() - t0)
            if s.build_layers is not None:
                from asd.profiler import depth_extrapolate

                full = s.resolved_shape()["num_hidden_layers"]
                l1 = s.build_layers
                per_call.append(
                    {"seconds": depth_extrapolate(times[0], times[1], l1, l1 // 2, full), "measured": times}
                )
                if rank in blk:
                    decs[c.stage].run_layers = decs[c.stage].n_layers
            else:
                per_call.append({"seconds": times[0]})
        wall = time.perf_counter() - t_pass
        inner_all = [x for part in world.gather(inner) for x in part]
        if rep > 0:
            passes.append({"wall_s": wall, "calls": per_call, "inner": inner_all})
    if rank != 0:
        return {}
    return _summarise(layout, calls, passes)


def _summarise(layout, calls: list[Call], passes: list[dict]) -> dict:
    """Medians over the timed replays: total seconds (sum of calls; wall clock when nothing is extrapolated),
    per call, and per stage split into passes and decode steps."""
    from asd.profiler import depth_extrapolate

    K = len(layout.stages)
    extrap = any(s.build_layers is not None for s in layout.stages)
    totals = [sum(c["seconds"] for c in p["calls"]) for p in passes]
    per_call = [statistics.median(p["calls"][i]["seconds"] for p in passes) for i in range(len(calls))]
    per_stage = []
    for k in range(K):
        s = layout.stages[k]
        idx = [i for i, c in enumerate(calls) if c.stage == k]
        pass_s, dec_s = [], []
        for p in passes:
            got: dict[tuple[int, int], tuple[float, float]] = {(i, j): (a, b) for i, j, a, b in p["inner"]}
            ps = ds = 0.0
            for i in idx:
                if s.build_layers is None:
                    a, b = got[(i, 0)]
                else:
                    l1, full = s.build_layers, s.resolved_shape()["num_hidden_layers"]
                    (a1, b1), (a2, b2) = got[(i, 0)], got[(i, 1)]
                    a = depth_extrapolate(a1, a2, l1, l1 // 2, full)
                    b = depth_extrapolate(b1, b2, l1, l1 // 2, full)
                ps, ds = ps + a, ds + b
            pass_s.append(ps)
            dec_s.append(ds)
        steps = sum(c.decode_steps for c in (calls[i] for i in idx))
        per_stage.append(
            {
                "name": s.name,
                "calls": len(idx),
                "seconds": sum(per_call[i] for i in idx),
                "pass_s": statistics.median(pass_s) if idx else 0.0,
                "decode_s": statistics.median(dec_s) if idx else 0.0,
                "decode_steps": steps,
                "decode_s_per_step": (statistics.median(dec_s) / steps) if steps else None,
                "depth_extrapolated": s.build_layers is not None,
            }
        )
    return {
        "seconds": statistics.median(totals),
        "seconds_samples": totals,
        "wall_s": None if extrap else statistics.median(p["wall_s"] for p in passes),
        "depth_extrapolated": extrap,
        "per_stage": per_stage,
        "calls": [
            {
                "batch": c.batch,
                "hop": c.hop,
                "stage": layout.stages[c.stage].name,
                "kind": c.kind,
                "rows": c.rows,
                "tokens": c.tokens,
                "keep": c.keep,
                "segments": [list(x) for x in c.segments],
                "seconds": t,
            }
            for c, t in zip(calls, per_call)
        ],
    }


def free(decs: dict) -> None:
    """Drop the decoders and their graphs (tests build several layouts in one process)."""
    import torch

    decs.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
