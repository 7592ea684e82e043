"""The CUDA token_stats kernel (csrc/token_stats.cu) against the torch twin in float64 on fresh
random inputs (bf16/fp16/fp32, one block per row and rows cut into pieces, misaligned and strided
rows), the NaN/−inf rules, every output element written, and the CPU kernel. Needs a CUDA device
and an asd._C built with CUDA (scripts/gpu_tokstats.py runs these on the device machine)."""
import math

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the reference twin and the CUDA path need it)")

from asd._ext import get_ext, has_cuda_kernels
from asd.tokstats import ARGMAX, DTYPE_BF16, DTYPE_F16, DTYPE_F32, LOGPROB, token_stats, token_stats_ref

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not has_cuda_kernels(), reason="asd._C was built without CUDA kernels"),
]
QWEN_V = 152_064
CODES = {torch.float32: DTYPE_F32, torch.bfloat16: DTYPE_BF16, torch.float16: DTYPE_F16}
SENTINEL = -7777.0  # poison: no output may keep it


def _raw(x: torch.Tensor, c: torch.Tensor, pieces: int, variant: int = 0) -> torch.Tensor:
    """The extension called directly on a poisoned output, with a forced number of pieces per row
    and scan variant (1 float scan, 2 packed bf16/fp16 scan)."""
    out = torch.full((x.shape[0], 5), SENTINEL, device=x.device)
    get_ext().token_stats_cuda(
        x.data_ptr(), x.shape[0], x.shape[1], x.stride(0), CODES[x.dtype], c.data_ptr(), out.data_ptr(),
        torch.cuda.current_stream().cuda_stream, x.device.index or 0, pieces, variant,
    )
    torch.cuda.synchronize()
    assert not (out == SENTINEL).any(), "an output element was not written"
    return out


def _check(got: torch.Tensor, x: torch.Tensor, c: torch.Tensor, rel=1e-3):
    """NaN/inf where the spec has them, argmax exact, elsewhere ‖got − spec‖/‖spec‖ ≤ rel per column."""
    want = token_stats_ref(x.double(), c).double()
    got = got.double()
    assert got.shape == want.shape and got.device == x.device
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN pattern differs"
    assert torch.equal(torch.isinf(got), torch.isinf(want)), "inf pattern differs"
    ok = torch.isfinite(want)
    assert torch.equal(got[:, ARGMAX][ok[:, ARGMAX]], want[:, ARGMAX][ok[:, ARGMAX]])
    for col in range(4):
        m = ok[:, col]
        if m.any():
            err = (got[m, col] - want[m, col]).norm() / want[m, col].norm().clamp_min(1e-30)
            assert err <= rel, (col, float(err))
            torch.testing.assert_close(got[m, col], want[m, col], rtol=rel, atol=1e-5)


def _rand(n, v, dtype, seed, scale=4.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = (torch.randn(n, v, generator=g, device="cuda") * scale).to(dtype)
    c = torch.randint(0, v, (n,), generator=g, device="cuda")
    return x, c


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n,v", [(1, 1), (3, 7), (5, 1001), (2, QWEN_V), (256, QWEN_V), (7, 151_936)])
def test_matches_spec(dtype, n, v):
    x, c = _rand(n, v, dtype, seed=n * 7 + v)
    _check(token_stats(x, c), x, c)
    for pieces in (1, 3):  # one block per row, and rows cut into pieces merged by a second kernel
        for variant in (1, 2):
            _check(_raw(x, c, pieces, variant), x, c)


def test_same_as_cpu_kernel():
    x, c = _rand(16, QWEN_V, torch.float32, seed=1)
    torch.testing.assert_close(token_stats(x, c).cpu(), token_stats(x.cpu(), c.cpu()), rtol=1e-4, atol=1e-6)
    xb = x.bfloat16()
    torch.testing.assert_close(token_stats(xb, c).cpu(), token_stats(xb.cpu(), c.cpu()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_misaligned_and_strided_rows(dtype):
    full, c = _rand(6, 5003, dtype, seed=3)
    x = full[:, 3:]  # rows start off any 16-byte boundary, odd row stride
    c = c % x.shape[1]
    assert x.data_ptr() % 16 != 0
    for pieces in (0, 1, 2):
        for variant in (1, 2):
            _check(_raw(x, c, pieces, variant), x, c)
    seq = _rand(4 * 3, 4096, dtype, seed=4)[0].view(4, 3, 4096)[:, -1, :]  # last position, [N,T,V]
    _check(token_stats(seq, c[:4] % 4096), seq, c[:4] % 4096)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("pieces", [1, 4])
def test_undefined_rows_and_neg_inf(pieces, variant):
    x, c = _rand(8, 20_000, torch.float32, seed=5)
    x[0, 123] = math.nan
    x[1, 19_999] = math.nan
    x[2, 7] = math.inf
    x[3] = -math.inf
    x[4, torch.rand(20_000, device="cuda") < 0.7] = -math.inf  # many zero-probability tokens
    c[4] = int(torch.nonzero(torch.isneginf(x[4]))[0])
    x[5] = -math.inf
    x[5, 4321] = 1.0  # one finite token: entropy 0, p_max 1, margin 1
    x[6, 10] = x[6, 15_000] = 99.0  # tie across blocks: first index, margin 0
    for xx in (x, x.bfloat16(), x.half()):
        out = _raw(xx, c, pieces, variant)
        assert torch.isnan(out[:4]).all()
        assert torch.isfinite(out[4:, [0, 1, 2, 4]]).all()
        assert out[4, LOGPROB] == -math.inf
        assert out[5].tolist() == [0.0, 1.0, 1.0, out[5, LOGPROB].item(), 4321.0]
        assert out[6, ARGMAX] == 10 and out[6, 2] == 0
        _check(out, xx, c)


def test_huge_magnitudes():
    g = torch.Generator(device="cuda").manual_seed(6)
    fmax = torch.finfo(torch.float32).max
    x = (torch.rand(4, 30_000, generator=g, device="cuda") * 2 - 1) * 1e30
    x[1] = (torch.rand(30_000, generator=g, device="cuda") * 2 - 1) * fmax
    x[2, 5] = fmax
    x[2, 6] = -fmax
    c = torch.tensor([0, 1, 6, 3], device="cuda")
    out = token_stats(x, c)
    _check(out, x, c)
    assert out[2, LOGPROB] == -math.inf
    xb = x.bfloat16()  # ± float max rounds to ±inf in bf16: row 1 and 2 become undefined
    xb[3] = -(torch.rand(30_000, generator=g, device="cuda") + 1).bfloat16() * 1e35  # all very negative
    for variant in (1, 2):
        _check(_raw(xb, c, 0, variant), xb, c)


def test_chosen_out_of_range():
    x, c = _rand(3, 100, torch.bfloat16, seed=8)
    c[1] = 100
    with pytest.raises(ValueError, match="out of range"):
        token_stats(x, c)
    out = token_stats(x, c, validate=False)  # no sync: the kernel marks it instead
    assert torch.isnan(out[1, LOGPROB]) and torch.isfinite(out[[0, 2]]).all()


def test_side_stream_and_empty():
    x, c = _rand(64, QWEN_V, torch.bfloat16, seed=9)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = token_stats(x, c)
    s.synchronize()
    _check(out, x, c)
    empty = token_stats(x[:0], c[:0])
    assert empty.shape == (0, 5) and empty.is_cuda
