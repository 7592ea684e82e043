"""Tensor-parallel decode of a Qwen2-architecture model (Megatron-style): one process per device, each holding
its shard only (docs/gpu.md, "72B at tensor parallelism 4").

Sharding over the ``world`` ranks of a process group: q/k/v and gate/up column-parallel (a rank's query and KV
heads, its slice of the MLP), o_proj and down_proj row-parallel followed by an all-reduce, lm_head
column-parallel (a rank's slice of the vocabulary); embeddings and norms replicated. The step is
``StaticDecoder``'s (asd/models/cuda_graph.py): the same layer math (``_attn_in``, ``cache_attention``,
``_mlp``, optionally ``torch.compile``d), the same static KV cache layout (a rank's KV heads only) and the same
CUDA-graph capture (``capture_graph``; NCCL collectives inside the graph), one graph per step shape. With
``world == 1`` there are no collectives: the decoder is a static decoder over weights it builds itself.

Random weights are built shard by shard on each device in the target dtype (a 72B never exists whole);
``full=`` shards an existing ``Qwen2ForCausalLM`` instead (the equality check). ``layers=`` builds only the
first N decoder layers and ``run_layers`` runs fewer of them: a model too deep for its devices is timed at two
depths and extrapolated (``asd.profiler.depth_extrapolate``).

Shapes: ids [B,T] int64 (right-padded rows: row b's tokens go to cache slots lengths[b], lengths[b]+1, …,
which are also their RoPE positions); outputs of the last ``keep`` positions: logits [B,keep,V] (gathered over
the ranks) or their argmax [B,keep] int64 (vocabulary-parallel: each rank's max, then one all-gather).

Command line (one process per device, under torchrun; keep NVLink multicast off, ``NCCL_NVLS_ENABLE=0``)::

    torchrun --nproc_per_node 4 -m asd.models.tensor_parallel --size 72b --out tp72b.json
    torchrun --nproc_per_node 2 -m asd.models.tensor_parallel --check --device cpu --out check.json

``--check`` builds one tiny fp32 model on every rank (same seed), shards it, and compares greedy tokens and
prefill logits with ``StaticDecoder`` on the whole model. ``--size`` times decode steps and prefill of a
Qwen2.5 shape (random bf16 weights); the JSON is what ``asd profile --tensor-parallel`` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from asd.models.attention import additive_length_mask, kernel_supports
from asd.models.cuda_graph import (
    ATTENTION_CHOICES,
    _attn_in,
    _mlp,
    _rms_norm,
    cache_attention,
    capture_graph,
    compile_block,
    rope_tables,
    use_kernel,
)

OUTPUTS = ("argmax", "logits")
SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
)


def check_shardable(shape: dict, world: int) -> None:
    """ValueError unless query heads, KV heads, MLP width and vocabulary all divide by ``world``."""
    parts = {k: shape[k] for k in ("num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size")}
    bad = [f"{k}={v}" for k, v in parts.items() if v % world]
    if bad:
        raise ValueError(f"tensor parallelism {world} needs {', '.join(parts)} divisible by {world}; not: {bad}")


def shard_bytes(shape: dict, world: int, layers: int | None = None, dtype_bytes: int = 2) -> int:
    """Bytes of one rank's weights at tensor parallelism ``world`` with ``layers`` decoder layers (default all):
    its slices of every layer and of lm_head, plus the replicated embedding table and final norm (what
    ``TPDecoder.weight_bytes`` counts once built)."""
    h, inter, V = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    nq, nkv = shape["num_attention_heads"] // world, shape["num_key_value_heads"] // world
    hd = h // shape["num_attention_heads"]
    nqkv = (nq + 2 * nkv) * hd
    layer = 2 * h + nqkv * h + nqkv + h * nq * hd + 2 * (inter // world) * h + h * (inter // world)
    n = shape["num_hidden_layers"] if layers is None else layers
    return (n * layer + V * h + h + (V // world) * h) * dtype_bytes


def kv_bytes(shape: dict, world: int, tokens: int, layers: int | None = None, dtype_bytes: int = 2) -> int:
    """Bytes of one rank's static KV cache holding ``tokens`` row × slot cells (its KV heads only)."""
    n = shape["num_hidden_layers"] if layers is None else layers
    hd = shape["hidden_size"] // shape["num_attention_heads"]
    return n * tokens * 2 * (shape["num_key_value_heads"] // world) * hd * dtype_bytes


class TPDecoder:
    """Rank ``rank`` of ``world``: its weight shard, its KV heads, and the step over them.

    ``shape``: Qwen2Config keyword arguments (``asd.models.shapes.QWEN25[...]``; the keys of ``SHAPE_KEYS``).
    ``max_batch``, ``max_len``: the cache geometry (rows, token slots per row; slots rounded up to 64);
    ``kv_tokens``: capacity of the KV buffer in row × slot cells (default max_batch × slots), so that
    ``resize`` can re-cut it (e.g. 32 rows × 576 slots for decode, then 1 row × 2048 slots for prefill).
    ``group``: the torch.distributed group of the ``world`` ranks (None: the default group; unused when
    world == 1). ``full``: a ``Qwen2ForCausalLM`` to shard (else random weights, seeded by (seed, rank)).
    ``layers``: decoder layers to build (default all). ``compile_blocks``: ``torch.compile`` the element-wise
    blocks of decode steps (CUDA only; passes over several tokens run them plain). ``attention``: as
    ``StaticDecoder``'s ("auto": split-K kernel at batch 1 where it applies). ``pool``: a CUDA graph memory
    pool shared with other decoders on the device (stages that never run at once), None for the decoder's own.
    """

    def __init__(
        self,
        shape: dict,
        rank: int,
        world: int,
        max_batch: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        group: Any = None,
        full: Any = None,
        layers: int | None = None,
        kv_tokens: int | None = None,
        compile_blocks: bool = False,
        attention: str = "auto",
        seed: int = 0,
        pool: Any = None,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {attention!r}")
        check_shardable(shape, world)
        assert shape["vocab_size"] < 1 << 24, "vocabulary-parallel argmax carries indices as float32"
        device = torch.device(device)
        h, inter, L, V = (
            shape["hidden_size"],
            shape["intermediate_size"],
            shape["num_hidden_layers"],
            shape["vocab_size"],
        )
        nq, nkv = shape["num_attention_heads"], shape["num_key_value_heads"]
        hd = h // nq
        self.rank, self.world, self.device, self.dtype, self.group = rank, world, device, dtype, group
        self.n_q, self.n_kv, self.head_dim, self.inter = nq // world, nkv // world, hd, inter // world
        self.eps, self.vocab, self.full_layers = float(shape["rms_norm_eps"]), V, L
        self.n_layers = L if layers is None else int(layers)
        if not 1 <= self.n_layers <= L:
            raise ValueError(f"layers must be in 1..{L}, got {layers}")
        self.run_layers = self.n_layers  # layers each step runs (≤ n_layers): depth extrapolation times two depths
        q0, k0, i0, v0 = rank * self.n_q * hd, rank * self.n_kv * hd, rank * self.inter, rank * (V // world)
        gen = torch.Generator(device=device).manual_seed(int(seed) * 1000 + rank)

        def rnd(*s: int) -> torch.Tensor:
            return torch.randn(*s, device=device, dtype=dtype, generator=gen).mul_(0.02)

        def ones() -> torch.Tensor:
            return torch.ones(h, device=device, dtype=dtype)

        # per layer (ln1 [h], w_qkv [(nq+2nkv)·hd, h], b_qkv [(nq+2nkv)·hd], w_o [h, nq·hd], ln2 [h],
        # w_gu [2·inter, h], w_down [h, inter]): StaticDecoder's order, this rank's slices
        self.layers: list[tuple[torch.Tensor, ...]] = []
        nqkv = (self.n_q + 2 * self.n_kv) * hd
        with torch.no_grad():
            for li in range(self.n_layers):
                if full is not None:
                    lay = full.model.layers[li]
                    a, m = lay.self_attn, lay.mlp
                    sq, sk = slice(q0, q0 + self.n_q * hd), slice(k0, k0 + self.n_kv * hd)
                    si = slice(i0, i0 + self.inter)
                    w_qkv = torch.cat([a.q_proj.weight[sq], a.k_proj.weight[sk], a.v_proj.weight[sk]])
                    b_qkv = torch.cat([a.q_proj.bias[sq], a.k_proj.bias[sk], a.v_proj.bias[sk]])
                    w_gu = torch.cat([m.gate_proj.weight[si], m.up_proj.weight[si]])
                    parts = (
                        lay.input_layernorm.weight,
                        w_qkv,
                        b_qkv,
                        a.o_proj.weight[:, sq],
                        lay.post_attention_layernorm.weight,
                        w_gu,
                        m.down_proj.weight[:, si],
                    )
                    self.layers.append(tuple(t.detach().to(device, dtype).contiguous() for t in parts))
                else:
                    w_o, w_gu, w_down = rnd(h, self.n_q * hd), rnd(2 * self.inter, h), rnd(h, self.inter)
                    self.layers.append((ones(), rnd(nqkv, h), rnd(nqkv), w_o, ones(), w_gu, w_down))
            if full is not None:
                self.embed = full.model.embed_tokens.weight.detach().to(device, dtype)
                self.norm = full.model.norm.weight.detach().to(device, dtype)
                self.lm_head = full.lm_head.weight[v0 : v0 + V // world].detach().to(device, dtype).contiguous()
                rot = full.model.rotary_emb
                inv_freq = rot.inv_freq.to(device, torch.float)
                rope_scale = float(getattr(rot, "attention_scaling", 1.0))
            else:
                self.embed = rnd(V, h)
                self.norm = ones()
                self.lm_head = rnd(V // world, h)
                theta = float(shape.get("rope_theta", 10000.0))
                inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float, device=device) / hd))
                rope_scale = 1.0
        self._inv_freq, self._rope_scale = inv_freq, rope_scale
        g = self.n_q // self.n_kv
        self.attention = attention
        self.kernel_available = kernel_supports(device, dtype, hd, g)
        # decode steps (T == 1: launch-bound) run the compiled blocks, passes over many tokens the plain ones (as
        # asd.profiler times prefill); sizes compiled as symbols: one compile serves every stage and batch size
        self._decode_blocks = (_attn_in, _mlp)
        if compile_blocks and device.type == "cuda":
            self._decode_blocks = (compile_block(_attn_in, dynamic=True), compile_block(_mlp, dynamic=True))
        self._pool = pool
        slots = -(-max_len // 64) * 64
        self.kv_tokens = max(int(kv_tokens or 0), max_batch * slots)
        # [layers · kv_tokens · 2 · kv_heads · head_dim], viewed as [layers, rows, 2, kv_heads, slots, head_dim]
        self._kv_flat = torch.zeros(self.n_layers * self.kv_tokens * 2 * self.n_kv * hd, device=device, dtype=dtype)
        self.graphs: dict[tuple, tuple] = {}
        self.resize(max_batch, max_len)

    # ---- geometry ---------------------------------------------------------------------------------------
    def resize(self, max_batch: int, max_len: int) -> None:
        """Re-cut the KV buffer into ``max_batch`` rows of ``max_len`` slots (rounded up to 64); drops the
        captured graphs (they point into the old view). ValueError beyond ``kv_tokens``."""
        slots = -(-max_len // 64) * 64
        if max_batch < 1 or max_len < 1 or max_batch * slots > self.kv_tokens:
            raise ValueError(
                f"cache geometry {max_batch} rows × {slots} slots outside 1..kv_tokens={self.kv_tokens} cells"
            )
        n = self.n_layers * max_batch * 2 * self.n_kv * slots * self.head_dim
        self.kv = self._kv_flat[:n].view(self.n_layers, max_batch, 2, self.n_kv, slots, self.head_dim)
        self.max_batch, self.max_len = max_batch, slots
        self.lengths = torch.zeros(max_batch, dtype=torch.long, device=self.device)  # [B] filled slots per row
        self._cos, self._sin = rope_tables(self._inv_freq, slots, self._rope_scale, self.dtype)
        self.graphs = {}

    def weight_bytes(self) -> int:
        """Bytes of this rank's weights (the layers built, embeddings, norm, lm_head slice)."""
        n = sum(x.numel() for t in self.layers for x in t) + self.embed.numel() + self.norm.numel()
        return (n + self.lm_head.numel()) * self.embed.element_size()

    def layer_bytes(self) -> int:
        """Bytes of one decoder layer's shard on this rank."""
        return sum(x.numel() for x in self.layers[0]) * self.embed.element_size()

    def set_lengths(self, lengths: int | Sequence[int], rows: int | None = None) -> None:
        """Filled slots of rows 0..: one value for ``rows`` rows, or one per row."""
        if isinstance(lengths, int):
            n = self.max_batch if rows is None else rows
            vals = [lengths] * n
        else:
            vals = [int(x) for x in lengths]
        if len(vals) > self.max_batch or any(not 0 <= v <= self.max_len for v in vals):
            raise ValueError(f"lengths must be in 0..{self.max_len}, at most {self.max_batch} rows")
        self.lengths[: len(vals)].copy_(torch.tensor(vals, dtype=torch.long), non_blocking=False)

    # ---- collectives ----------------------------------------------------------------------------------------
    def _all_reduce(self, t: torch.Tensor) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, group=self.group)

    def _all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """[world, *t.shape]: every rank's ``t`` (gloo has no all_gather_into_tensor)."""
        import torch.distributed as dist

        if t.is_cuda:
            out = torch.empty((self.world, *t.shape), dtype=t.dtype, device=t.device)
            dist.all_gather_into_tensor(out, t.contiguous(), group=self.group)
            return out
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.stack(parts)

    # ---- the step -----------------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, window: int, keep: int, out: str) -> torch.Tensor:
        """ids [B,T] at slots lengths[:B]+t, attending over slots [0, window) → the last ``keep`` positions'
        logits [B,keep,V] or argmax [B,keep] (every rank); writes K/V; no length update; no host sync."""
        B, T = ids.shape
        pos = self.lengths[:B, None] + torch.arange(T, device=ids.device)  # [B,T] slot == RoPE position
        cos, sin = self._cos[pos], self._sin[pos]  # [B,T,head_dim]
        g = self.n_q // self.n_kv
        kernel = use_kernel(self.attention, self.kernel_available, B, g, T, window)
        mask = None if kernel else additive_length_mask(pos, window, g, self.dtype)
        rows = torch.arange(B, device=ids.device)[:, None].expand(B, T)
        attn_in, mlp = self._decode_blocks if T == 1 else (_attn_in, _mlp)
        x = F.embedding(ids, self.embed)
        for li in range(self.run_layers):
            w_ln1, w_qkv, b_qkv, w_o, w_ln2, w_gu, w_down = self.layers[li]
            q, kv_new = attn_in(x, w_ln1, w_qkv, b_qkv, cos, sin, self.eps, self.n_q, self.n_kv, self.head_dim)
            o = cache_attention(q, kv_new, self.kv[li, :B], rows, pos, pos, window, mask, kernel, self.head_dim)
            a = F.linear(o, w_o)  # row-parallel: a partial sum on every rank
            self._all_reduce(a)
            x = x + a
            d = mlp(x, w_ln2, w_gu, w_down, self.eps, self.inter)
            self._all_reduce(d)
            x = x + d
        part = F.linear(_rms_norm(x[:, T - keep :], self.norm, self.eps), self.lm_head)  # [B,keep,V/world]
        if out == "logits":
            if self.world == 1:
                return part
            return self._all_gather(part).permute(1, 2, 0, 3).reshape(B, keep, self.vocab)
        mx, idx = part.max(-1)  # [B,keep] this rank's best (first occurrence) in its vocabulary slice
        if self.world == 1:
            return idx
        # one all-gather of (max, global index) as float32 pairs (indices < 2^24 are exact)
        pair = torch.stack((mx.float(), (idx + self.rank * (self.vocab // self.world)).float()))  # [2,B,keep]
        both = self._all_gather(pair)  # [world,2,B,keep]
        best = both[:, 0].argmax(0, keepdim=True)  # [1,B,keep] the first rank holding the maximum
        return both[:, 1].gather(0, best)[0].long()

    def step(
        self,
        ids: torch.Tensor,
        use_graph: bool | None = None,
        window: int | None = None,
        keep: int = 1,
        out: str = "argmax",
    ) -> torch.Tensor:
        """Feed ids [B,T] after each row's filled slots; lengths advance by T. Returns the last ``keep``
        positions' argmax [B,keep] int64 or logits [B,keep,V] (``out``); on CUDA graphs these are static
        buffers, valid until the next call with the same shape. ``window``: slots attended (rounded up to 64;
        default all). ``use_graph``: default on CUDA."""
        B, T = ids.shape
        if out not in OUTPUTS:
            raise ValueError(f"out must be one of {', '.join(OUTPUTS)}, got {out!r}")
        if not 1 <= B <= self.max_batch or not 1 <= keep <= T:
            raise ValueError(f"batch {B} outside 1..{self.max_batch} or keep {keep} outside 1..{T}")
        window = self.max_len if window is None else min(self.max_len, -(-window // 64) * 64)
        use_graph = self.device.type == "cuda" if use_graph is None else use_graph
        if not use_graph:
            res = self._forward(ids.to(self.device), window, keep, out)
            self.lengths[:B] += T
            return res
        key = (B, T, window, keep, out, self.run_layers)
        if key not in self.graphs:
            static = torch.zeros(B, T, dtype=torch.long, device=self.device)
            saved = self.lengths.clone()

            def body() -> torch.Tensor:
                res = self._forward(static, window, keep, out)
                self.lengths[:B] += T
                return res

            # a private memory pool per graph: capturing into one pool shared across the co-located stages' graphs
            # hit an allocator assert (use_count > 0) on an H200 with torch 2.11 (docs/layout.md)
            graph, res = capture_graph(body, warmup=2, pool=None, reset=lambda: self.lengths.copy_(saved))
            self.lengths.copy_(saved)
            self.graphs[key] = (static, res, graph)
        static, res, graph = self.graphs[key]
        static.copy_(ids, non_blocking=True)
        graph.replay()
        return res

    def prefill(
        self,
        ids: torch.Tensor,
        lengths: Sequence[int],
        use_graph: bool | None = None,
        keep: int = 1,
        out: str = "argmax",
    ) -> torch.Tensor:
        """Rows 0..B-1 from slot 0 over right-padded ids [B,T] (a prefill, or a verification pass over
        prompt + draft); afterwards row b holds ``lengths[b]`` filled slots (e.g. prompt + accepted tokens).
        Returns the last ``keep`` positions' outputs as ``step``."""
        B, T = ids.shape
        if len(lengths) != B:
            raise ValueError(f"lengths must hold {B} values, got {len(lengths)}")
        if self.max_len < T:
            raise ValueError(f"{T} tokens exceed the cache's {self.max_len} slots per row")
        self.set_lengths(0, B)
        res = self.step(ids, use_graph, window=T, keep=keep, out=out)
        self.set_lengths(list(lengths))
        return res


# ---- command line -------------------------------------------------------------------------------------------
def check(rank: int, world: int, device: torch.device, group: Any = None) -> dict:
    """TP greedy == StaticDecoder on the whole tiny model (fp32): tokens equal, prefill logits' max error."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from asd.models.cuda_graph import StaticDecoder

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    full = Qwen2ForCausalLM(cfg).eval()
    shape = {k: getattr(cfg, k) for k in SHAPE_KEYS if hasattr(cfg, k)}  # rope_theta: absent in transformers 5
    tp = TPDecoder(shape, rank, world, 2, 64, torch.float32, device, group=group, full=full)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 256, (2, 9), generator=g)
    ref = StaticDecoder(full, max_batch=2, max_len=64, use_graphs=False)
    ref_lg = ref.prefill(prompt, [9, 9], all_logits=True)
    want = ref.generate_greedy(prompt.tolist(), 12)
    use_graph = device.type == "cuda"
    with torch.no_grad():
        lg = tp.prefill(prompt.to(device), [9, 9], use_graph, keep=9, out="logits")
        err = float((lg.cpu() - ref_lg).abs().max())
        arg = tp.prefill(prompt.to(device), [9, 9], use_graph, keep=9).cpu()  # vocabulary-parallel argmax
        argmax_equal = bool((arg == lg.argmax(-1).cpu()).all())
        nxt = tp.prefill(prompt.to(device), [9, 9], use_graph)[:, -1]
        got = [nxt.cpu()]
        for _ in range(11):
            nxt = tp.step(got[-1][:, None].to(device), use_graph)[:, -1]
            got.append(nxt.cpu())
    tokens = torch.stack(got, 1).tolist()
    return {
        "equal": tokens == want,
        "argmax_equal": argmax_equal,
        "prefill_logits_max_abs_err": err,
        "graphs": use_graph,
    }


def main(argv: list[str] | None = None) -> int:
    """Under torchrun: the check and/or the decode/prefill timing of one Qwen2.5 shape; rank 0 writes ``--out``."""
    import torch.distributed as dist

    from asd.profiler import time_fn
    from asd.provenance import git_revision

    ap = argparse.ArgumentParser(prog="python -m asd.models.tensor_parallel", description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="72b", help="Qwen2.5 shape (asd.models.shapes.QWEN25); '' = none")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda (NCCL) or cpu (gloo)")
    ap.add_argument("--check", action="store_true", help="TP == one-device check on a tiny fp32 model first")
    ap.add_argument("--out", default=None, help="JSON written by rank 0")
    ap.add_argument("--batch", default="1,8", help="decode batch sizes")
    ap.add_argument("--context", type=int, default=512, help="tokens in the cache while decoding")
    ap.add_argument("--steps", type=int, default=32, help="decode steps per timed measurement")
    ap.add_argument("--prefill", default="64,128,256,512,1024,2048", help="prompt lengths of the prefill timing")
    ap.add_argument("--no-graph", action="store_true", help="eager steps (no CUDA graphs)")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    rec: dict[str, Any] = {
        "world": world,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "args": vars(args),
        "git_revision": git_revision(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    def timed(fn, warmup: int, repeats: int) -> list[float]:
        return time_fn(fn, device, warmup, repeats, sync=dist.barrier)  # every rank released together

    with torch.no_grad():
        if args.check or not cuda:
            rec["check"] = check(rank, world, device)
            if rank == 0:
                print("check:", rec["check"], flush=True)
        if cuda and args.size:
            from asd.models.shapes import QWEN25

            if args.size not in QWEN25:
                raise ValueError(f"--size {args.size!r}: not one of {', '.join(QWEN25)}")
            shape = QWEN25[args.size]
            bs = [int(b) for b in args.batch.split(",")]
            pre = [int(t) for t in args.prefill.split(",") if t]
            t0 = time.time()
            tp = TPDecoder(shape, rank, world, max(bs), max([args.context + args.steps, *pre]), torch.bfloat16, device)
            dwin = args.context + args.steps  # decode attends over this window, as the 1-GPU profile does
            torch.cuda.synchronize()
            rec["weight_bytes_per_rank"] = tp.weight_bytes()
            a = torch.randn((1 << 30) // 4, device=device)
            b = torch.empty_like(a)
            rec["copy_bandwidth_Bps"] = 2 * a.numel() * 4 / statistics.median(timed(lambda: b.copy_(a), 3, 20))
            del a, b
            x = torch.randn(1, 1, shape["hidden_size"], device=device, dtype=torch.bfloat16)
            rec["allreduce_1x8192_s"] = statistics.median(timed(lambda: dist.all_reduce(x), 5, 50))
            if rank == 0:
                print(
                    f"[{args.size} TP{world}] built in {time.time() - t0:.1f}s, "
                    f"{torch.cuda.memory_allocated(device) / 1e9:.1f} GB/rank",
                    flush=True,
                )
            ids = torch.randint(0, shape["vocab_size"], (max(bs), args.context), device=device)
            dist.broadcast(ids, 0)
            use_graph = not args.no_graph
            graphs = {"on": use_graph}  # read by the timed closures: eager after a failed capture
            rec["decode"] = {}
            for B in bs:
                tok = ids[:B, -1:]

                def run(B=B, tok=tok) -> None:
                    tp.set_lengths(args.context, B)
                    for _ in range(args.steps):
                        tp.step(tok, graphs["on"], dwin, out="logits")

                try:
                    secs = timed(run, 2, 5)
                except Exception as e:  # graph capture of NCCL can fail: fall back to eager
                    if rank == 0:
                        print(f"graph step failed ({type(e).__name__}: {e}); eager from here", flush=True)
                    use_graph, graphs["on"], tp.graphs = False, False, {}
                    secs = timed(run, 1, 3)
                rec["decode"][str(B)] = statistics.median(secs) / args.steps
                rec["graphs"] = use_graph
            rec["prefill"] = {}
            for n in pre:
                pid = torch.randint(0, shape["vocab_size"], (1, n), device=device)
                dist.broadcast(pid, 0)

                def run_p(pid=pid, n=n) -> None:
                    tp.set_lengths(0, 1)
                    tp.step(pid, graphs["on"], n, keep=n, out="logits")

                rec["prefill"][str(n)] = statistics.median(timed(run_p, 2, 5))
            if rank == 0:
                print(json.dumps({k: v for k, v in rec.items() if k != "check"}), flush=True)
    if rank == 0 and args.out:
        with open(args.out, "w") as f:
            json.dump(rec, f, indent=1)
    # why: on 4 H200s the closing barrier hung for minutes after the graphs with NCCL inside them had run;
    # every rank's work is done and rank 0 has written the result, so leave without the teardown
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
