"""asd.models.attention: the split-K decode attention kernel against its readable twin.

CPU tests pin the twin to torch's scaled_dot_product_attention with the same mask and check the input
errors; ``gpu`` tests compare the CUDA kernel with the twin on fresh random inputs (dtypes, head dims,
rows, ragged positions, strided cache views, windows not a multiple of the chunk) and check that every
output element is written and that the call can be captured in a CUDA graph.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from asd.models.attention import (  # noqa: E402
    KERNEL_HEAD_DIMS, decode_attention, decode_attention_ref, kernel_supports,
)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def make_inputs(B, H, G, T, W, D, dtype, device, seed, cache_slots=None):
    """q [B,H,G*T,D]; k, v strided views [B,H,W,D] of a [B,2,H,S,D] cache as StaticDecoder holds it;
    pos [B,T] ragged in [0, W)."""
    g = torch.Generator().manual_seed(seed)
    S = cache_slots or W
    cache = torch.randn(B, 2, H, S, D, generator=g).to(device=device, dtype=dtype)
    q = torch.randn(B, H, G * T, D, generator=g).to(device=device, dtype=dtype)
    last = torch.randint(T - 1, W, (B,), generator=g)
    pos = (last[:, None] - (T - 1) + torch.arange(T)[None, :]).to(device)        # [B,T] consecutive, ragged
    return q, cache[:, 0, :, :W], cache[:, 1, :, :W], pos


def sdpa_masked(q, k, v, pos, scale):
    """What StaticDecoder did before the kernel: SDPA with an additive [B,1,G*T,W] mask."""
    B, H, R, D = q.shape
    W, T = k.shape[2], pos.shape[1]
    allowed = torch.arange(W)[None, None, :] <= pos[:, :, None]                      # [B,T,W]
    bias = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, float("-inf"))
    mask = bias[:, None, None].expand(B, 1, R // T, T, W).reshape(B, 1, R, W)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@pytest.mark.parametrize("B,H,G,T,W,D", [(1, 4, 7, 1, 70, 32), (3, 2, 5, 4, 33, 16), (2, 1, 1, 8, 130, 64)])
def test_twin_equals_sdpa_with_the_mask(B, H, G, T, W, D):
    q, k, v, pos = make_inputs(B, H, G, T, W, D, torch.float64, "cpu", seed=B * 100 + W)
    torch.testing.assert_close(decode_attention_ref(q, k, v, pos, D ** -0.5), sdpa_masked(q, k, v, pos, D ** -0.5),
                               rtol=1e-12, atol=1e-12)


def test_cpu_call_is_the_twin():
    q, k, v, pos = make_inputs(2, 2, 3, 2, 40, 32, torch.float32, "cpu", seed=5)
    assert not kernel_supports(q.device, q.dtype, 32, 6)
    assert torch.equal(decode_attention(q, k, v, pos, 0.2), decode_attention_ref(q, k, v, pos, 0.2))


def test_bad_inputs_name_the_argument():
    q, k, v, pos = make_inputs(2, 2, 3, 2, 40, 32, torch.float32, "cpu", seed=6)
    with pytest.raises(ValueError, match="pos must be int64"):
        decode_attention(q, k, v, pos.int(), 1.0)
    with pytest.raises(ValueError, match="multiple of pos's T=4"):
        decode_attention(q, k, v, torch.zeros(2, 4, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="k and v must be"):
        decode_attention(q, k, v[:, :, :10], pos, 1.0)
    with pytest.raises(ValueError, match="dtypes differ"):
        decode_attention(q.double(), k, v, pos, 1.0)


GPU_CASES = [  # B, H, G, T, W, D, cache slots
    (1, 4, 7, 1, 576, 128, 576),    # Qwen2.5-7B decode at batch 1
    (8, 8, 5, 1, 577, 128, 640),    # 32B decode, batch 8, window not a multiple of 32, strided view
    (2, 4, 7, 5, 200, 128, 256),    # 7B verification of a 5-token draft
    (3, 2, 2, 3, 31, 32, 64),       # the testbed's head dim, window under one chunk
    (4, 2, 2, 1, 1000, 16, 1024),   # long window, most chunks masked for short rows
    (1, 2, 8, 8, 96, 64, 128),      # R = 64 rows, the kernel's maximum
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,H,G,T,W,D,S", GPU_CASES)
def test_kernel_matches_twin(B, H, G, T, W, D, S, dtype):
    assert kernel_supports(torch.device("cuda"), dtype, D, G * T)
    seed = int(torch.randint(0, 2**31 - 1, ()))                       # fresh inputs every run
    q, k, v, pos = make_inputs(B, H, G, T, W, D, dtype, "cuda", seed, cache_slots=S)
    out = decode_attention(q, k, v, pos, D ** -0.5)
    ref = decode_attention_ref(q, k, v, pos, D ** -0.5)
    assert out.shape == ref.shape and out.dtype == dtype and torch.isfinite(out).all(), f"seed {seed}"
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(out.float(), ref.float(), rtol=tol, atol=tol, msg=f"seed {seed}")


@pytest.mark.gpu
@needs_cuda
def test_kernel_writes_every_element_and_replays_in_a_graph():
    q, k, v, pos = make_inputs(2, 4, 7, 2, 300, 128, torch.bfloat16, "cuda", seed=11, cache_slots=320)
    ref = decode_attention_ref(q, k, v, pos, 0.1)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        decode_attention(q, k, v, pos, 0.1)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = decode_attention(q, k, v, pos, 0.1)
    out.fill_(float("nan"))                                            # replay must overwrite all of it
    graph.replay()
    torch.cuda.synchronize()
    assert not out.isnan().any()
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)
    pos.sub_(1).clamp_(min=0)                                          # new positions, same graph
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), decode_attention_ref(q, k, v, pos, 0.1).float(), rtol=1e-2, atol=1e-2)


@pytest.mark.gpu
@needs_cuda
def test_kernel_errors_are_value_errors():
    from asd._ext import get_ext

    q, k, v, pos = make_inputs(1, 1, 1, 1, 8, 128, torch.float32, "cuda", seed=3)
    with pytest.raises(ValueError, match="head dim D must be 16, 32, 64 or 128"):
        get_ext().decode_attention_cuda(q.data_ptr(), k.data_ptr(), v.data_ptr(), 1024, 1024, 128, pos.data_ptr(),
                                        q.data_ptr(), q.data_ptr(), 1, 1, 1, 1, 96, 8, 1.0, 0, 0)
    assert 96 not in KERNEL_HEAD_DIMS
