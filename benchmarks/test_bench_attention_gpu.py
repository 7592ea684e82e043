"""Decode attention on the GPU at Qwen2.5 decode shapes: the split-K kernel (asd.models.attention,
csrc/decode_attention.cu) against its twin ``decode_attention_ref`` and against what StaticDecoder ran
before it, SDPA with an additive mask. Each call covers 48 layers' worth of distinct K/V (more than the
L2 cache), replayed from one CUDA graph; times are per layer (one attention call).

Skips without CUDA. On a device machine:
    python3 -m pytest benchmarks/test_bench_attention_gpu.py --benchmark-only \
        --benchmark-json=$OUT/attention_gpu.json
extra_info: ``us_per_layer`` (median, CUDA events), ``kv_bytes_per_layer`` (K+V read at the full window),
``card``; the kernel's test also stores ``ratio_vs_sdpa`` and ``ratio_vs_ref`` measured in the same test.
"""
import pytest
import torch

from asd.models.attention import additive_length_mask, decode_attention, decode_attention_ref, kernel_supports
from asd.models.cuda_graph import capture_graph
from asd.profiler import time_fn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

LAYERS = 48
SHAPES = {  # name: (KV heads, G = query heads per KV head, head dim); context 520 in a 576-slot window
    "7b": (4, 7, 128),
    "32b": (8, 5, 128),
}
W, CONTEXT = 576, 520


def _inputs(shape, B, T=1):
    H, G, D = SHAPES[shape]
    g = torch.Generator(device="cuda").manual_seed(0)
    caches = [torch.randn(B, 2, H, W, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(LAYERS)]
    q = torch.randn(B, H, G * T, D, device="cuda", dtype=torch.bfloat16, generator=g)
    pos = torch.full((B, T), CONTEXT, device="cuda", dtype=torch.long)
    return q, [(c[:, 0], c[:, 1]) for c in caches], pos, D ** -0.5


def _sdpa(q, k, v, pos, scale):
    """What StaticDecoder runs without the kernel (its mask built here per call, there once per step)."""
    mask = additive_length_mask(pos, k.shape[2], q.shape[2] // pos.shape[1], q.dtype)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _graph_timer(fn, q, kvs, pos, scale):
    """A CUDA graph of LAYERS calls; returns a callable timing one replay (µs per layer)."""
    def body():
        for k, v in kvs:
            fn(q, k, v, pos, scale)
    graph, _ = capture_graph(body)
    time_fn(graph.replay, "cuda", warmup=3, repeats=0)
    return lambda: time_fn(graph.replay, "cuda", warmup=0, repeats=1)[0] * 1e6 / LAYERS


def _median(timer, n=15):
    xs = sorted(timer() for _ in range(n))
    return xs[n // 2]


@pytest.mark.parametrize("B", [1, 8])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["kernel", "sdpa", "ref"])
def test_bench_decode_attention(benchmark, impl, shape, B):
    q, kvs, pos, scale = _inputs(shape, B)
    assert kernel_supports(q.device, q.dtype, q.shape[-1], q.shape[2])
    fns = {"kernel": decode_attention, "sdpa": _sdpa, "ref": decode_attention_ref}
    timer = _graph_timer(fns[impl], q, kvs, pos, scale)
    samples = []
    benchmark.pedantic(lambda: samples.append(timer()), rounds=20, iterations=1)
    H, G, D = SHAPES[shape]
    benchmark.extra_info.update(us_per_layer=sorted(samples)[len(samples) // 2],
                                kv_bytes_per_layer=2 * B * H * W * D * 2, card=torch.cuda.get_device_name(0))
    if impl == "kernel":   # same test, same minute: the two others interleaved
        others = {name: _graph_timer(fns[name], q, kvs, pos, scale) for name in ("sdpa", "ref")}
        mine = _median(timer)
        benchmark.extra_info.update(ratio_vs_sdpa=_median(others["sdpa"]) / mine,
                                    ratio_vs_ref=_median(others["ref"]) / mine)
