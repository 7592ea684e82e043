"""Where decode attention's time goes (device run; the question behind csrc/decode_attention.cu).

At Qwen2.5 7B/32B decode shapes (batch 1 and 8, 576-slot window, context 520, bf16), per layer: torch's
SDPA with the length mask under each back-end (default, memory-efficient, cuDNN, math), flash attention
without a mask, an explicit matmul-softmax-matmul, flex attention (block mask and score_mod), and a
K/V clone as the memory yardstick. 48 layers of distinct K/V per CUDA graph; medians of CUDA-event times.

Run on the GPU machine from the repository root; writes OUT.json (per-layer µs of every variant, card named):

    PYTHONPATH=. python3 scripts/gpu_attn_bench.py OUT.json   (committed: results/gpu/attn_backends_h{100,200}.json)
"""
from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from asd.models.attention import additive_length_mask
from asd.models.cuda_graph import capture_graph
from asd.profiler import time_fn

LAYERS, W, CONTEXT, HEAD_DIM = 48, 576, 520, 128
SHAPES = {"7b": (28, 4), "32b": (40, 8)}   # query heads, KV heads


def per_layer_us(body, repeats: int = 20) -> float:
    """Median µs per layer of a graph of ``body`` (LAYERS calls)."""
    graph, _ = capture_graph(body, warmup=2)
    secs = sorted(time_fn(graph.replay, "cuda", warmup=3, repeats=repeats))
    return secs[len(secs) // 2] * 1e6 / LAYERS


def measure(nq: int, nkv: int, B: int) -> dict:
    dt, G = torch.bfloat16, nq // nkv
    ks = [torch.randn(B, nkv, W, HEAD_DIM, device="cuda", dtype=dt) for _ in range(LAYERS)]
    vs = [torch.randn_like(k) for k in ks]
    q = torch.randn(B, nkv, G, HEAD_DIM, device="cuda", dtype=dt)     # G query heads folded into rows
    pos = torch.full((B, 1), CONTEXT - 1, device="cuda", dtype=torch.long)
    mask = additive_length_mask(pos, W, G, dt)                          # [B,1,G,W]
    out = {}

    def sdpa():
        for k, v in zip(ks, vs):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out["sdpa_mask_default"] = per_layer_us(sdpa)
    for backend in ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                out["sdpa_mask_" + backend] = per_layer_us(sdpa)
        except Exception as ex:  # noqa: BLE001 — a back-end that refuses these inputs is a result too
            out["sdpa_mask_" + backend] = repr(ex)[:80]

    def flash_nomask():
        for k, v in zip(ks, vs):
            F.scaled_dot_product_attention(q, k, v)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out["flash_nomask"] = per_layer_us(flash_nomask)
    except Exception as ex:  # noqa: BLE001
        out["flash_nomask"] = repr(ex)[:80]

    def manual():
        for k, v in zip(ks, vs):
            s = torch.matmul(q, k.transpose(-1, -2)).float() * HEAD_DIM ** -0.5 + mask
            torch.matmul(s.softmax(-1).to(dt), v)
    out["manual"] = per_layer_us(manual)
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
        qf = torch.randn(B, nq, 1, HEAD_DIM, device="cuda", dtype=dt)
        lens = pos[:, 0] + 1
        block_mask = create_block_mask(lambda b, h, qi, kv: kv < lens[b], B, None, 1, W, device="cuda")

        def flex_block():
            for k, v in zip(ks, vs):
                flex(qf, k, v, block_mask=block_mask, enable_gqa=True)
        out["flex_gqa"] = per_layer_us(flex_block)

        def flex_score():
            for k, v in zip(ks, vs):
                flex(qf, k, v, enable_gqa=True,
                     score_mod=lambda sc, b, h, qi, kv: torch.where(kv < lens[b], sc, -float("inf")))
        out["flex_gqa_scoremod"] = per_layer_us(flex_score)
    except Exception as ex:  # noqa: BLE001
        out["flex"] = repr(ex)[:200]

    def copy():
        for k, v in zip(ks, vs):
            k.clone()
            v.clone()
    out["kv_clone_x2(read+write)"] = per_layer_us(copy)
    out["kv_bytes_per_layer"] = 2 * B * nkv * W * HEAD_DIM * 2
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: gpu_attn_bench.py OUT.json", file=sys.stderr)
        return 2
    res = {}
    for name, (nq, nkv) in SHAPES.items():
        for B in (1, 8):
            res[f"{name}_b{B}"] = out = measure(nq, nkv, B)
            print(name, B, {k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}, flush=True)
    res["card"] = torch.cuda.get_device_name(0)
    with open(args[0], "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
