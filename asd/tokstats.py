"""Per-token statistics of logit rows: entropy, max prob, top1−top2 margin, logprob of the chosen
token, argmax (docs/algorithm.md#compiled-hot-path).

``token_stats`` is the fast path: the C++ kernel of ``asd._C`` for CPU tensors and numpy arrays
(OpenMP, float32/bfloat16 read in place), the CUDA kernel for CUDA tensors when the extension was
built with CUDA, and the readable torch twin ``token_stats_ref`` otherwise. Both compute, per row
x[0..V) with chosen token c:

    p = softmax(x)
    entropy  = −Σ_v p_v log p_v            (nats; 0·log 0 = 0)
    max prob = max_v p_v
    margin   = p_(1) − p_(2)                (top-1 minus top-2 probability; 0 on a tie; p_(1) if V = 1)
    logprob  = log p_c
    argmax   = first index of max_v x_v, as a float

Undefined rows: a row containing NaN or +inf, or made only of −inf, has no softmax; all five
columns are NaN (argmax too, so that NaN never passes unnoticed: test with ``isnan`` before casting
the argmax column to an integer). −inf entries elsewhere are tokens of probability 0.

Example::

    >>> stats = token_stats(torch.tensor([[0.0, 0.0, -inf]]), torch.tensor([2]))
    >>> stats  # entropy log 2, p_max 0.5, margin 0, logprob -inf, argmax 0
    tensor([[0.6931, 0.5000, 0.0000, -inf, 0.0000]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asd._ext import get_ext, has_cuda_kernels, require_ext

ENTROPY, MAXPROB, MARGIN, LOGPROB, ARGMAX = range(5)
COLUMNS = ("entropy", "max_prob", "margin", "logprob", "argmax")

# dtype codes shared with csrc/token_stats.cu
DTYPE_F32, DTYPE_BF16, DTYPE_F16 = 0, 1, 2


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _check_shapes(shape: tuple, chosen_shape: tuple) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"token_stats: logits must be 2-D [N, V], got shape {tuple(shape)}")
    n, v = int(shape[0]), int(shape[1])
    if v < 1:
        raise ValueError("token_stats: logits must have V >= 1 columns, got 0")
    if tuple(chosen_shape) != (n,):
        raise ValueError(
            f"token_stats: chosen must have shape [N] = [{n}] (one token per logits row), got {tuple(chosen_shape)}"
        )
    return n, v


def _check_range(lo: int, hi: int, v: int) -> None:
    if lo < 0 or hi >= v:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token_stats: chosen holds {bad}, out of range [0, {v})")


def token_stats(logits: Any, chosen: Any, *, validate: bool = True) -> Any:
    """Statistics of each logit row, in one pass over V.

    logits: [N, V] torch tensor (CPU or CUDA; float32, bfloat16, float16, float64) or numpy array
            (float32, float16, float64, or uint16 holding bfloat16 bits); the last axis need not be
            the only one contiguous (any row stride).
    chosen: [N] integer token ids in [0, V) (torch tensor on the same device, numpy, or a list).
    validate: check that chosen is in range. On CUDA this costs one device→host sync; with
              ``validate=False`` an out-of-range chosen gives a NaN logprob instead.
    returns: [N, 5] float32, columns ENTROPY, MAXPROB, MARGIN, LOGPROB, ARGMAX (see module doc);
             a torch tensor on logits' device for torch input, else a numpy array.
    """
    if _is_torch(logits):
        return _token_stats_torch(logits, chosen, validate)
    return _token_stats_numpy(np.asarray(logits), chosen)


def _token_stats_numpy(logits: np.ndarray, chosen: Any) -> np.ndarray:
    ch = np.asarray(chosen)
    n, v = _check_shapes(logits.shape, ch.shape)
    if ch.dtype.kind not in "iu":
        raise ValueError(f"token_stats: chosen must hold integers, got dtype {ch.dtype}")
    if n:
        _check_range(int(ch.min()), int(ch.max()), v)
    ch = ch.astype(np.int64, copy=False)
    if logits.dtype not in (np.float32, np.float16, np.float64, np.uint16):
        raise ValueError(
            f"token_stats: logits dtype must be float32, float16, float64 or uint16 (bfloat16 bits), got {logits.dtype}"
        )
    ext = get_ext()
    if ext is None or logits.dtype == np.float64:
        import torch

        return token_stats_ref(_numpy_to_torch(logits), torch.from_numpy(ch)).numpy()
    if logits.dtype == np.float16:
        logits = logits.astype(np.float32)
    if logits.shape[1] > 1 and logits.strides[1] != logits.itemsize:
        logits = np.ascontiguousarray(logits)
    return ext.token_stats(logits, ch)


def _numpy_to_torch(logits: np.ndarray):
    import torch

    if logits.dtype == np.uint16:
        return torch.from_numpy(np.ascontiguousarray(logits).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(logits)


def _token_stats_torch(logits, chosen, validate: bool):
    import torch

    if not torch.is_tensor(chosen):
        chosen = torch.as_tensor(chosen, device=logits.device)
    n, v = _check_shapes(tuple(logits.shape), tuple(chosen.shape))
    if chosen.dtype.is_floating_point or chosen.dtype == torch.bool or chosen.is_complex():
        raise ValueError(f"token_stats: chosen must hold integers, got dtype {chosen.dtype}")
    if chosen.device != logits.device:
        raise ValueError(f"token_stats: chosen is on {chosen.device} but logits on {logits.device}")
    codes = {torch.float32: DTYPE_F32, torch.bfloat16: DTYPE_BF16, torch.float16: DTYPE_F16}
    if logits.dtype not in codes and logits.dtype != torch.float64:
        raise ValueError(f"token_stats: logits dtype must be float32, bfloat16, float16 or float64, got {logits.dtype}")
    if n and (validate or logits.device.type != "cuda"):
        mm = torch.aminmax(chosen)
        _check_range(int(mm.min), int(mm.max), v)
    logits = logits.detach()
    if v > 1 and logits.stride(1) != 1:
        logits = logits.contiguous()
    chosen = chosen.detach().to(torch.int64).contiguous()

    if logits.device.type == "cuda":
        if logits.dtype == torch.float64 or not has_cuda_kernels():
            return token_stats_ref(logits, chosen)
        out = torch.empty((n, 5), dtype=torch.float32, device=logits.device)
        if n:
            with torch.cuda.device(logits.device):
                stream = torch.cuda.current_stream(logits.device).cuda_stream
                require_ext("token_stats_cuda").token_stats_cuda(
                    logits.data_ptr(),
                    n,
                    v,
                    logits.stride(0),
                    codes[logits.dtype],
                    chosen.data_ptr(),
                    out.data_ptr(),
                    stream,
                    logits.device.index,
                )
        return out

    ext = get_ext()
    if ext is None or logits.device.type != "cpu" or logits.dtype == torch.float64:
        return token_stats_ref(logits, chosen)
    if logits.dtype == torch.float16:
        logits = logits.float()
    if logits.dtype == torch.bfloat16:
        arr = logits.view(torch.int16).numpy().view(np.uint16)
    else:
        arr = logits.numpy()
    return torch.from_numpy(ext.token_stats(arr, chosen.numpy()))


def token_stats_ref(logits, chosen):
    """Readable torch twin of ``token_stats`` (the specification; also the fallback).

    logits: [N, V] torch tensor (any float dtype, any device); bfloat16/float16 are upcast to
            float32, float64 stays float64.
    chosen: [N] int64 tensor on the same device, values in [0, V) (not checked here).
    returns: [N, 5] float32 on logits' device.
    """
    import torch

    x = logits if logits.dtype == torch.float64 else logits.float()
    n, v = x.shape
    logp = torch.log_softmax(x, dim=-1)  # [N, V]
    p = logp.exp()
    # 0·log 0 = 0 for −inf logits (probability exactly 0); NaN stays NaN
    entropy = -torch.where(torch.isneginf(logp), torch.zeros_like(p), p * logp).sum(-1)
    top = torch.topk(p, k=min(2, v), dim=-1).values  # [N, 1 or 2]
    second = top[:, 1] if v > 1 else torch.zeros_like(top[:, 0])
    logprob = logp.gather(1, chosen.long().view(n, 1)).squeeze(1)
    argmax = x.argmax(dim=-1).to(x.dtype)  # first maximal index
    out = torch.stack([entropy, top[:, 0], top[:, 0] - second, logprob, argmax], dim=1)
    undefined = torch.isnan(x).any(-1) | torch.isposinf(x).any(-1) | torch.isneginf(x).all(-1)
    out = out.masked_fill(undefined.view(n, 1), float("nan"))
    return out.float()
