"""Attention of a few query rows over a static KV cache (decode and short verification chunks).

``decode_attention`` runs the split-K CUDA kernel ``asd._C.decode_attention_cuda`` (csrc/decode_attention.cu)
on CUDA tensors it supports and the readable twin ``decode_attention_ref`` everywhere else. The layout is
``StaticDecoder``'s (asd/models/cuda_graph.py): grouped-query attention with the G query heads of a KV
head folded into the row axis, row r = g*T + t for token t of a T-token chunk.

Shapes and units:
    q    [B, H, R, D]   H = KV heads, R = G*T (R % T == 0), D = head dim; float32/bfloat16/float16
    k, v [B, H, W, D]   W cache slots (any strides, last axis contiguous; k and v strided alike)
    pos  [B, T] int64   token (b, t) attends slots 0..pos[b, t] (inclusive), pos in [0, W)
    out  [B, H, R, D]   q's dtype: softmax(scale · q kᵀ) v, accumulated in float32
"""

from __future__ import annotations

import torch

from asd._ext import get_ext, has_cuda_kernels, require_ext

KERNEL_HEAD_DIMS = (16, 32, 64, 128)
KERNEL_MAX_ROWS = 64
KERNEL_MAX_WINDOW = 1 << 16
_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def decode_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float
) -> torch.Tensor:
    """The specification (shapes in the module docstring): masked softmax attention in float32 (float64
    for float64 inputs)."""
    _B, _H, R, _D = q.shape
    W, T = k.shape[2], pos.shape[1]
    limit = pos[:, torch.arange(R, device=q.device) % T]  # [B,R] last slot
    allowed = torch.arange(W, device=q.device)[None, None, :] <= limit[:, :, None]  # [B,R,W]
    acc = torch.promote_types(q.dtype, torch.float32)  # float32, or float64
    s = torch.einsum("bhrd,bhwd->bhrw", q.to(acc), k.to(acc)) * scale  # [B,H,R,W]
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    return torch.einsum("bhrw,bhwd->bhrd", s.softmax(-1), v.to(acc)).to(q.dtype)


def additive_length_mask(pos: torch.Tensor, window: int, g: int, dtype: torch.dtype) -> torch.Tensor:
    """The SDPA form of the same mask: pos [B,T] int64 → [B,1,G*T,window] additive (0 where slot <= pos[b,t],
    -inf elsewhere), query row g*T + t as in ``decode_attention``."""
    B, T = pos.shape
    allowed = torch.arange(window, device=pos.device)[None, None, :] <= pos[:, :, None]  # [B,T,window]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=pos.device).masked_fill_(~allowed, float("-inf"))
    return bias[:, None, None].expand(B, 1, g, T, window).reshape(B, 1, g * T, window)


def kernel_supports(device: torch.device, dtype: torch.dtype, head_dim: int, rows: int) -> bool:
    """Whether ``decode_attention`` runs the CUDA kernel for these (else the twin)."""
    return (
        device.type == "cuda"
        and dtype in _CODES
        and head_dim in KERNEL_HEAD_DIMS
        and 1 <= rows <= KERNEL_MAX_ROWS
        and has_cuda_kernels()
        and hasattr(get_ext(), "decode_attention_cuda")
    )


def _check(q, k, v, pos) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"decode_attention: q, k, v must be 4-d [B,H,R,D] / [B,H,W,D], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    B, H, R, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[1] != H or k.shape[3] != D:
        raise ValueError(
            f"decode_attention: k and v must be [B={B}, H={H}, W, D={D}], got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if pos.dim() != 2 or pos.shape[0] != B or pos.dtype != torch.int64:
        raise ValueError(f"decode_attention: pos must be int64 [B={B}, T], got {pos.dtype} {tuple(pos.shape)}")
    if R % pos.shape[1]:
        raise ValueError(f"decode_attention: rows R={R} must be a multiple of pos's T={pos.shape[1]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"decode_attention: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device == pos.device):
        raise ValueError(
            f"decode_attention: q, k, v, pos on different devices: {q.device}, {k.device}, {v.device}, {pos.device}"
        )


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of ``q`` over the cache ``k``/``v`` up to ``pos`` (module docstring). The CUDA kernel
    where ``kernel_supports``; no host sync and no allocation outside torch's, so it can be captured in
    a CUDA graph. ``pos`` is not range-checked on the GPU (that would sync): out-of-range entries are
    clipped by the window there and by the twin elsewhere."""
    _check(q, k, v, pos)
    B, H, R, D = q.shape
    W = k.shape[2]
    if W > KERNEL_MAX_WINDOW or not kernel_supports(q.device, q.dtype, D, R):
        return decode_attention_ref(q, k, v, pos, scale)
    es = k.element_size()
    aligned = all(x * es % 16 == 0 for x in k.stride()[:3]) and k.data_ptr() % 16 == 0 and v.data_ptr() % 16 == 0
    if k.stride() != v.stride() or k.stride(3) != 1 or not aligned:  # the kernel's 16-byte vector loads
        k, v = k.contiguous(), v.contiguous()
    q, pos = q.contiguous(), pos.contiguous()
    if q.data_ptr() % 16:
        q = q.clone()
    T = pos.shape[1]
    ext = require_ext("decode_attention_cuda")
    out = torch.empty_like(q)
    ws = torch.empty(ext.decode_attention_workspace(B, H, R, D, W), dtype=torch.float32, device=q.device)
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream(q.device).cuda_stream
        ext.decode_attention_cuda(
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            k.stride(0),
            k.stride(1),
            k.stride(2),
            pos.data_ptr(),
            out.data_ptr(),
            ws.data_ptr(),
            B,
            H,
            R,
            T,
            D,
            W,
            float(scale),
            _CODES[q.dtype],
            stream,
        )
    return out
