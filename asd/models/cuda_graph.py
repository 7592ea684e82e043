"""A static-KV-cache decode/verify path for Qwen2-architecture models, replayed from CUDA graphs.

transformers' eager decode of Qwen2.5 shapes is launch-bound (docs/gpu.md: 7B at 51.6 ms/step against a
4.0 ms bandwidth floor on an H200), and ``torch.compile(mode="reduce-overhead")`` over its static cache
failed in transformers 5.17. This module runs the model's own weights through its own step function:

- a static KV cache, one tensor ``kv [layers, max_batch, 2, kv_heads, slots, head_dim]`` (K at index 0,
  V at 1 of dim 2; slots = max_len + 1 scratch slot for holes, rounded up to 64), preallocated and
  zeroed (masked slots must hold finite numbers: 0 × NaN is NaN);
- per-row lengths ``lengths [max_batch] int64`` on the device; row b's next token goes to cache slot
  ``lengths[b]`` and has RoPE position ``lengths[b]`` (rows may have different prompt lengths;
  prompts are right-padded, so slot == position, as in HF generate with left padding and position ids
  from the attention mask);
- attention over the whole window with a length mask; grouped query attention without repeating K/V
  (the G query heads of one KV head are folded into the query length axis). Decode and verify steps
  (G*T <= 64 rows) at batch 1 use the split-K CUDA kernel of ``asd.models.attention`` where it applies
  (CUDA, head_dim 16/32/64/128), everything else ``scaled_dot_product_attention``;
- fused q/k/v and gate/up projections (the HF modules' parameters are re-pointed to views of the fused
  tensors: no second copy of the weights, and the HF model keeps working unchanged);
- on CUDA, one ``torch.cuda.CUDAGraph`` per (batch size, tokens per step), captured on first use; the
  step advances ``lengths`` inside the graph and leaves the argmax of the last position in a static buffer.

Greedy output equals the eager HF path (tests/models/test_cuda_graph.py; fp32 at Qwen2.5-7B/14B shapes
on an H100; in bf16 only up to rounding ties, as HF's own attention back-ends differ: docs/gpu.md).

Example::

    dec = StaticDecoder(model, max_batch=8, max_len=1024)
    out = dec.generate_greedy([[1, 2, 3], [4, 5]], max_new_tokens=32)   # list of token lists
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from asd.models.attention import (
    KERNEL_HEAD_DIMS,
    KERNEL_MAX_ROWS,
    KERNEL_MAX_WINDOW,
    additive_length_mask,
    decode_attention,
    kernel_supports,
)

ATTENTION_CHOICES = ("auto", "kernel", "sdpa")


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2RMSNorm exactly: normalise in fp32, round to x's dtype, then scale."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attn_in(x, w_ln, w_qkv, b_qkv, cos, sin, eps: float, n_q: int, n_kv: int, head_dim: int):
    """Norm, fused q/k/v projection and RoPE.

    x [B,T,hidden]; cos/sin [B,T,head_dim] (x's dtype) → q [B,n_kv,G*T,head_dim] (query rows
    ordered g*T + t, head h = kv*G + g as in HF's repeat_kv), kv_new [B,T,2,n_kv,head_dim].
    """
    B, T, _ = x.shape
    h = _rms_norm(x, w_ln, eps)
    qkv = F.linear(h, w_qkv, b_qkv).view(B, T, n_q + 2 * n_kv, head_dim)
    qk = qkv[:, :, : n_q + n_kv]
    c, s = cos.unsqueeze(2), sin.unsqueeze(2)
    qk = qk * c + _rotate_half(qk) * s
    g = n_q // n_kv
    q = qk[:, :, :n_q].reshape(B, T, n_kv, g, head_dim).permute(0, 2, 3, 1, 4).reshape(B, n_kv, g * T, head_dim)
    kv_new = torch.stack((qk[:, :, n_q:], qkv[:, :, n_q + n_kv :]), dim=2)
    return q, kv_new


def _mlp(x, w_ln, w_gu, w_down, eps: float, inter: int):
    """Norm and SwiGLU MLP, no residual: x [B,T,hidden] → [B,T,hidden] (w_gu [2·inter, hidden] fused gate/up,
    w_down [hidden, inter]). A tensor-parallel shard passes its slice of the MLP and sums the outputs."""
    h = _rms_norm(x, w_ln, eps)
    gu = F.linear(h, w_gu)
    return F.linear(F.silu(gu[..., :inter]) * gu[..., inter:], w_down)


def _attn_out_mlp(x, o, w_o, w_ln, w_gu, w_down, eps: float, inter: int):
    """o_proj + residual, norm, SwiGLU MLP + residual. x [B,T,hidden], o [B,T,n_q*head_dim] → [B,T,hidden]."""
    x = x + F.linear(o, w_o)
    return x + _mlp(x, w_ln, w_gu, w_down, eps, inter)


def rope_tables(inv_freq: torch.Tensor, n_slots: int, scale: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [n_slots, head_dim] in ``dtype`` for positions 0..n_slots-1, as Qwen2RotaryEmbedding computes
    them (inv_freq [head_dim/2] float32 on the target device; ``scale`` its attention_scaling)."""
    freqs = torch.arange(n_slots, device=inv_freq.device, dtype=torch.float)[:, None] * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)


def use_kernel(attention: str, available: bool, B: int, g: int, T: int, window: int) -> bool:
    """Whether a step of B rows × T tokens (g query heads per KV head) attends through the split-K kernel:
    ``attention`` "kernel" always, "auto" at batch 1 where the kernel is available, within its limits."""
    return (
        (attention == "kernel" or (attention == "auto" and available and B == 1))
        and g * T <= KERNEL_MAX_ROWS
        and window <= KERNEL_MAX_WINDOW
    )


def cache_attention(q, kv_new, cache, rows, slot, pos, window: int, mask, kernel: bool, head_dim: int):
    """Write a layer's new K/V into its cache and attend over slots [0, window).

    q [B,n_kv,G*T,head_dim] and kv_new [B,T,2,n_kv,head_dim] (``_attn_in``); cache [B,2,n_kv,slots,head_dim]
    (one layer of the static cache); rows, slot, pos [B,T] int64 (row index, cache slot, RoPE position);
    mask [B,1,G*T,window] additive (SDPA) or None with ``kernel`` → o [B,T,n_kv·G·head_dim].
    """
    B, T = rows.shape
    n_kv = cache.shape[2]
    g = q.shape[2] // T
    cache[rows, :, :, slot] = kv_new
    k, v = cache[:, 0, :, :window], cache[:, 1, :, :window]
    if kernel:  # same rows, same mask (slot <= pos), split over the window
        o = decode_attention(q, k, v, pos, head_dim**-0.5)
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=head_dim**-0.5)
    return o.view(B, n_kv, g, T, head_dim).permute(0, 3, 1, 2, 4).reshape(B, T, -1)


def compile_block(fn: Callable, dynamic: bool | None = None) -> Callable:
    """``torch.compile(fn, fullgraph=True, dynamic=dynamic)`` for an element-wise block of the step (fewer kernels
    per layer, captured in the CUDA graphs too). One code object serves every decoder, shape and model: its
    recompile limit is raised. ``dynamic=True`` compiles sizes as symbols (one compile for many shapes)."""
    import torch._dynamo as dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo.config, name):
            setattr(dynamo.config, name, max(getattr(dynamo.config, name), 64))
    return torch.compile(fn, fullgraph=True, dynamic=dynamic)


def capture_graph(
    body: Callable[[], Any], warmup: int = 1, pool: Any = None, reset: Callable[[], object] | None = None
):
    """``(graph, out)``: a ``torch.cuda.CUDAGraph`` of ``body`` and what ``body`` returned while captured (its
    static output buffers, refilled by every ``graph.replay()``).

    ``warmup`` calls run first on a side stream (allocations, library handles, ``torch.compile``), each followed
    by ``reset()`` (e.g. rewinding a cache's lengths that ``body`` advances); the capture itself runs nothing.
    ``pool``: a ``torch.cuda.graph_pool_handle()`` shared by several graphs (their intermediates share memory),
    None for a private pool. The one capture helper of the package: ``StaticDecoder``, the tensor-parallel
    decoder (asd.models.tensor_parallel) and the GPU benchmarks use it. Time a graph with
    ``asd.profiler.time_fn(graph.replay, "cuda", ...)``.
    """
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            body()
            if reset is not None:
                reset()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = body()
    return graph, out


def _ordinary_tensors(fn):
    """Run ``fn`` with inference mode and autograd off, whatever the caller's mode.

    What the decoder keeps across calls (K/V cache, lengths, RoPE tables, fused weights, CUDA-graph
    buffers) is then made of ordinary tensors. Built inside ``torch.inference_mode`` they would be
    *inference tensors*, which no code may update in place outside inference mode: an engine's shared
    decoder is first built wherever its first session opens (e.g. inside ``HFEngine.score`` during a
    verification) and later used by sessions opened outside it (``speculative_decode``'s drafter).
    Ordinary tensors may be updated in place in either mode.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


class StaticDecoder:
    """Prefill, decode and verify over a static KV cache; CUDA-graph replay per (batch, tokens) on GPU.

    ``model``: a ``Qwen2ForCausalLM`` (any dtype/device; its q/k/v and gate/up weights get fused in
    place). ``max_batch``: rows of the cache. ``max_len``: cache slots per row (prompt + generated),
    rounded up to a multiple of 64. ``use_graphs``: None = on CUDA only. ``compile_blocks``: run the
    element-wise parts through ``torch.compile`` (fewer kernels per layer; captured in the graphs too;
    CUDA only, ignored on CPU). ``layers``: run only the first N decoder layers (profiling a model too
    deep for one device by extrapolation in depth; the output is then not the model's). ``attention``:
    "auto" (the split-K kernel for batch-1 decode/verify steps where it applies, else SDPA), "kernel"
    (every decode/verify step; an error where it does not apply) or "sdpa".
    """

    @_ordinary_tensors
    def __init__(
        self,
        model,
        max_batch: int,
        max_len: int,
        use_graphs: bool | None = None,
        compile_blocks: bool = False,
        layers: int | None = None,
        attention: str = "auto",
    ) -> None:
        cfg = model.config
        if max_batch < 1 or max_len < 1:
            raise ValueError(f"max_batch and max_len must be >= 1, got {max_batch}, {max_len}")
        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {attention!r}")
        if getattr(cfg, "use_sliding_window", False):
            raise ValueError("StaticDecoder does not implement sliding-window attention (use_sliding_window)")
        self.model = model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.n_layers = cfg.num_hidden_layers if layers is None else int(layers)
        if not 1 <= self.n_layers <= cfg.num_hidden_layers:
            raise ValueError(f"layers must be in 1..{cfg.num_hidden_layers}, got {layers}")
        self.n_q, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.inter = cfg.intermediate_size
        self.eps = cfg.rms_norm_eps
        self.vocab = cfg.vocab_size
        # slots per row: max_len usable + 1 scratch slot (holes write there; always masked), to a multiple of 64
        self._n_slots = -(-(max_len + 1) // 64) * 64
        self.max_batch, self.max_len, self._scratch = max_batch, self._n_slots - 1, self._n_slots - 1
        self.use_graphs = (self.device.type == "cuda") if use_graphs is None else use_graphs
        if self.use_graphs and self.device.type != "cuda":
            raise ValueError("use_graphs=True needs the model on a CUDA device")
        self._fuse_weights()
        dev = self.device
        # attention of decode/verify steps (R = G*T query rows a KV head): the split-K kernel
        # (asd.models.attention) or SDPA with an additive mask; prefill-sized steps always use SDPA
        g = self.n_q // self.n_kv
        can = kernel_supports(dev, self.dtype, self.head_dim, g)
        if attention == "kernel" and not can:
            raise ValueError(
                f"attention='kernel' needs a CUDA device, asd's CUDA kernels, float32/bfloat16/"
                f"float16 and head_dim in {KERNEL_HEAD_DIMS} (got {dev}, {self.dtype}, "
                f"head_dim {self.head_dim}); use attention='auto' or 'sdpa'"
            )
        # auto: the kernel at batch 1 only, where it measured faster end to end (H100, docs/gpu.md: 7B decode
        # 6.11 vs 6.35 ms); at batch 8 SDPA was faster (6.50 vs 6.58 ms), its cost flat in the batch
        self.attention, self.kernel_available = attention, can
        # [layers, B, 2 (K,V), kv_heads, slots, head_dim]
        self.kv = torch.zeros(
            self.n_layers, max_batch, 2, self.n_kv, self._n_slots, self.head_dim, dtype=self.dtype, device=dev
        )
        self.lengths = torch.zeros(max_batch, dtype=torch.long, device=dev)  # [B] filled slots per row
        self._host_len = [0] * max_batch
        rot = model.model.rotary_emb
        inv_freq = rot.inv_freq.to(device=dev, dtype=torch.float)
        # [slots, head_dim] each, as Qwen2RotaryEmbedding computes them
        self._cos, self._sin = rope_tables(
            inv_freq, self._n_slots, float(getattr(rot, "attention_scaling", 1.0)), self.dtype
        )
        self.last_hidden: torch.Tensor | None = None  # [B,T,hidden] final-norm states of the last step
        self._attn_in, self._attn_out_mlp = _attn_in, _attn_out_mlp
        if compile_blocks and self.device.type == "cuda":
            self._attn_in = compile_block(_attn_in)
            self._attn_out_mlp = compile_block(_attn_out_mlp)
        self._graphs: dict[tuple[int, int], tuple] = {}
        self._pool: Any = None  # torch.cuda graph memory pool handle, shared by this decoder's graphs

    # ---- weights -------------------------------------------------------------------------------
    def _fuse_weights(self) -> None:
        """Concatenate q/k/v (+bias) and gate/up per layer; re-point the HF parameters to views."""
        self._w = []
        for layer in self.model.model.layers[: self.n_layers]:
            a, m = layer.self_attn, layer.mlp
            if not hasattr(a, "_asd_fused"):
                with torch.no_grad():
                    wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], 0)
                    bqkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias], 0)
                    wgu = torch.cat([m.gate_proj.weight, m.up_proj.weight], 0)
                nq, nk = a.q_proj.weight.shape[0], a.k_proj.weight.shape[0]
                for mod, lo, hi in ((a.q_proj, 0, nq), (a.k_proj, nq, nq + nk), (a.v_proj, nq + nk, nq + 2 * nk)):
                    mod.weight = torch.nn.Parameter(wqkv[lo:hi], requires_grad=False)
                    mod.bias = torch.nn.Parameter(bqkv[lo:hi], requires_grad=False)
                ni = m.gate_proj.weight.shape[0]
                m.gate_proj.weight = torch.nn.Parameter(wgu[:ni], requires_grad=False)
                m.up_proj.weight = torch.nn.Parameter(wgu[ni:], requires_grad=False)
                a._asd_fused = (wqkv, bqkv, wgu)
            wqkv, bqkv, wgu = a._asd_fused
            self._w.append(
                (
                    layer.input_layernorm.weight,
                    wqkv,
                    bqkv,
                    a.o_proj.weight,
                    layer.post_attention_layernorm.weight,
                    wgu,
                    m.down_proj.weight,
                )
            )

    # ---- the step --------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
        """ids [B,T] int64, valid [B,T] int64 (0 = hole: padding inside a ragged chunk) → final-norm hidden
        states [B,T,hidden]; writes K/V.

        Row b's valid tokens take slots (== RoPE positions) lengths[b], lengths[b]+1, ...; holes write
        to the scratch slot and their outputs are garbage. Attends over slots [0, window). Does not
        advance lengths. No host sync (capturable).
        """
        B, T = ids.shape
        lens = self.lengths[:B]
        pos = (lens[:, None] + valid.cumsum(1) - 1).clamp_min(0)  # [B,T] position
        slot = torch.where(valid.bool(), pos, torch.full_like(pos, self._scratch))  # [B,T] cache slot
        cos, sin = self._cos[pos], self._sin[pos]  # [B,T,head_dim]
        g = self.n_q // self.n_kv
        kernel = use_kernel(self.attention, self.kernel_available, B, g, T, window)
        # additive mask, built once per step for all layers: [B,1,G*T,window]
        mask = None if kernel else additive_length_mask(pos, window, g, self.dtype)
        rows = torch.arange(B, device=ids.device)[:, None].expand(B, T)
        x = self.model.model.embed_tokens(ids)
        for li, (w_ln1, w_qkv, b_qkv, w_o, w_ln2, w_gu, w_down) in enumerate(self._w):
            q, kv_new = self._attn_in(x, w_ln1, w_qkv, b_qkv, cos, sin, self.eps, self.n_q, self.n_kv, self.head_dim)
            o = cache_attention(q, kv_new, self.kv[li, :B], rows, slot, pos, window, mask, kernel, self.head_dim)
            x = self._attn_out_mlp(x, o, w_o, w_ln2, w_gu, w_down, self.eps, self.inter)
        return _rms_norm(x, self.model.model.norm.weight, self.eps)

    def _check_room(self, B: int, T: int) -> None:
        if not 1 <= B <= self.max_batch:
            raise ValueError(f"batch size {B} outside 1..max_batch={self.max_batch}")
        need = max(self._host_len[:B]) + T
        if need > self.max_len:
            raise ValueError(f"KV cache full: {need} slots needed, max_len={self.max_len}")

    def set_lengths(self, lengths: Sequence[int]) -> None:
        """Roll rows 0..len-1 back (or forward) to the given filled lengths, e.g. after a rejected draft."""
        if len(lengths) > self.max_batch or any(not 0 <= n <= self.max_len for n in lengths):
            raise ValueError(f"lengths must be <= max_len={self.max_len}, at most {self.max_batch} rows")
        self._host_len[: len(lengths)] = [int(n) for n in lengths]
        self.lengths[: len(lengths)].copy_(torch.tensor(list(lengths), dtype=torch.long), non_blocking=False)

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, lengths: Sequence[int], all_logits: bool = False) -> torch.Tensor:
        """Fill rows 0..B-1 from slot 0 with right-padded prompts (eager).

        ids [B,T] int64 (row b's real tokens are ids[b, :lengths[b]]); returns logits [B,V] at each
        row's last real token, or [B,T,V] for every position if ``all_logits`` (for verification).
        Afterwards lengths[b] = lengths[b] (padding slots are masked and later overwritten).
        """
        B, T = ids.shape
        if len(lengths) != B or any(not 1 <= n <= T for n in lengths):
            raise ValueError(f"lengths must hold {B} values in 1..{T}, got {list(lengths)}")
        self.set_lengths([0] * B)
        self._check_room(B, T)
        valid = (torch.arange(T)[None] < torch.tensor(list(lengths))[:, None]).long()
        h = self._forward(ids.to(self.device), valid.to(self.device), window=T)  # [B,T,hidden]
        self.last_hidden = h
        self.set_lengths(lengths)
        if not all_logits:
            idx = torch.tensor([n - 1 for n in lengths], device=self.device)
            h = h[torch.arange(B, device=self.device), idx]  # [B,hidden]
        return self.model.lm_head(h)

    @torch.no_grad()
    def step(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ids [B,T] (T=1: decode; T>1: verify a draft, or a ragged chunk) after each row's filled
        slots; row b advances by its number of valid tokens (``valid`` [B,T] 0/1, default all 1; holes,
        e.g. left padding of right-aligned ragged rows, take no slot).

        Returns (logits [B,T,V], argmax of the last position [B] int64); ``last_hidden`` [B,T,hidden]
        holds the final-norm states. On CUDA these are static graph buffers: valid until the next call
        of ``step`` with any shape.
        """
        B, T = ids.shape
        self._check_room(B, T)
        if valid is None:
            adv = [T] * B
            valid_d = None
        else:
            if tuple(valid.shape) != (B, T):
                raise ValueError(f"valid must have shape {(B, T)}, got {tuple(valid.shape)}")
            adv = valid.long().sum(1).tolist()
            valid_d = valid.long().to(self.device, non_blocking=True)
        if self.use_graphs:
            static_ids, static_valid, logits, nxt, hidden, graph = self._graph(B, T)
            static_ids.copy_(ids, non_blocking=True)
            if valid_d is None:
                static_valid.fill_(1)
            else:
                static_valid.copy_(valid_d)
            graph.replay()
        else:
            v = torch.ones(B, T, dtype=torch.long, device=self.device) if valid_d is None else valid_d
            hidden = self._forward(ids.to(self.device), v, window=self._n_slots)
            logits = self.model.lm_head(hidden)
            nxt = logits[:, -1].argmax(-1)
            self.lengths[:B] += v.sum(1)
        self.last_hidden = hidden
        for b in range(B):
            self._host_len[b] += adv[b]
        return logits, nxt

    @torch.no_grad()
    def select_rows(self, idx: Sequence[int]) -> None:
        """Keep rows ``idx`` (in that order) as rows 0..len(idx)-1: batch compaction."""
        if not idx or any(not 0 <= i < self.max_batch for i in idx):
            raise ValueError(f"row indices must be in 0..{self.max_batch - 1}, got {list(idx)}")
        n, ti = len(idx), torch.as_tensor(list(idx), device=self.device)
        self.kv[:, :n] = self.kv[:, ti]
        self.lengths[:n] = self.lengths[ti]
        self._host_len[:n] = [self._host_len[i] for i in idx]

    def _graph_body(self, static_ids: torch.Tensor, static_valid: torch.Tensor):
        """One step on the static inputs ids/valid [B,T] → (logits [B,T,V], argmax of the last position [B],
        final-norm hidden [B,T,hidden]); advances lengths[:B] by each row's valid tokens. What a graph holds."""
        B = static_ids.shape[0]
        hidden = self._forward(static_ids, static_valid, window=self._n_slots)
        logits = self.model.lm_head(hidden)
        nxt = logits[:, -1].argmax(-1)
        self.lengths[:B] += static_valid.sum(1)
        return logits, nxt, hidden

    def _warm_up(self, static_ids: torch.Tensor, static_valid: torch.Tensor, runs: int = 2) -> None:
        """Run the step body ``runs`` times on all-hole inputs (valid = 0): compiles and allocates what the
        capture needs without changing any row.

        Every token of the warm-up is a hole: it writes only the scratch slot and takes position
        ``max(lengths[b] - 1, 0)`` (in range: lengths[b] <= max_len for every row the step touches), and no
        row's length moves. The previous warm-up fed real tokens after ``max`` of *all* rows' lengths, rows
        >= B included: stale lengths of an earlier, larger batch put positions past the cache (an
        out-of-bounds index on the GPU, a lost CUDA context after it). ``static_valid`` is left all 1.
        """
        B = static_ids.shape[0]
        assert 1 <= B <= self.max_batch and max(self._host_len[:B]) <= self.max_len
        saved = self.lengths.clone()
        static_valid.zero_()
        for _ in range(runs):
            self._graph_body(static_ids, static_valid)
        static_valid.fill_(1)
        assert torch.equal(self.lengths, saved), "an all-hole warm-up step must not advance any row"

    @_ordinary_tensors
    def _graph(self, B: int, T: int):
        key = (B, T)
        if key not in self._graphs:
            static_ids = torch.zeros(B, T, dtype=torch.long, device=self.device)
            static_valid = torch.ones(B, T, dtype=torch.long, device=self.device)
            # warm up on a side stream on all-hole inputs (compiles, cuBLAS handles; no row moves), then capture
            saved = self.lengths.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                self._warm_up(static_ids, static_valid)
            torch.cuda.current_stream().wait_stream(s)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph, (logits, nxt, hidden) = capture_graph(
                lambda: self._graph_body(static_ids, static_valid), warmup=0, pool=self._pool
            )
            self.lengths.copy_(saved)
            self._graphs[key] = (static_ids, static_valid, logits, nxt, hidden, graph)
        return self._graphs[key]

    # ---- greedy generation ----------------------------------------------------------------------
    @torch.no_grad()
    def generate_greedy(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        eos_token_id: int | None = None,
        on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    ) -> list[list[int]]:
        """Greedy continuation of each prompt (rows of one batch); each output stops after its first EOS.

        ``on_step(logits [B,V], chosen [B])`` sees every step's logits (e.g. for token statistics).
        """
        B = len(prompts)
        if B == 0 or max_new_tokens < 1:
            return [[] for _ in prompts]
        lens = [len(p) for p in prompts]
        if min(lens) < 1:
            raise ValueError("every prompt needs at least one token")
        T = max(lens)
        self._check_room(B, 0)
        if T + max_new_tokens - 1 > self.max_len:
            raise ValueError(f"prompt {T} + {max_new_tokens} new tokens exceed max_len={self.max_len}")
        ids = torch.zeros(B, T, dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        logits = self.prefill(ids, lens)  # [B,V]
        tok = logits.argmax(-1)
        out = torch.empty(B, max_new_tokens, dtype=torch.long, device=self.device)
        out[:, 0] = tok
        if on_step is not None:
            on_step(logits, tok)
        for i in range(1, max_new_tokens):
            if eos_token_id is not None and i % 16 == 0 and bool((out[:, :i] == eos_token_id).any(1).all()):
                break
            logits, tok = self.step(tok[:, None])
            out[:, i] = tok
            if on_step is not None:
                on_step(logits[:, -1], tok)
        else:
            i = max_new_tokens
        rows = out[:, :i].tolist()
        if eos_token_id is not None:
            rows = [r[: r.index(eos_token_id) + 1] if eos_token_id in r else r for r in rows]
        return rows
