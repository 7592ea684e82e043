"""CPU cost of the testbed stages: one batched decode step and one prefill, per stage.

``decode_step(model, batch=16, context=128)``: seconds of one forward over one new token per
sequence with a KV cache of ``context`` tokens (what a cascade pays per generated token).
``prefill(model, tokens=256)``: seconds of one forward over a 256-token prompt (batch 1).
Median (or another statistic) of ``repeats`` timed runs after ``warmup`` untimed ones; float32.
"""

from __future__ import annotations

import statistics
import time


def _inputs(batch: int, length: int, seed: int = 0):
    import torch

    from asd.testbed import tokenizer as tk

    g = torch.Generator().manual_seed(seed)
    return torch.randint(len(tk.SPECIALS), tk.VOCAB_SIZE, (batch, length), generator=g)


def decode_step(
    model, batch: int = 16, context: int = 128, warmup: int = 3, repeats: int = 15, stat=statistics.median
) -> float:
    """Seconds (``stat`` of the repeats) of one batched decode step (batch ``batch``, KV cache of ``context``)."""
    import torch

    x = _inputs(batch, context)
    times = []
    with torch.no_grad():
        out = model(x, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            o = model(nxt, past_key_values=cache, use_cache=True)
            nxt = o.logits[:, -1:].argmax(-1)
            dt = time.perf_counter() - t0
            cache = o.past_key_values
            if i >= warmup:
                times.append(dt)
    return stat(times)


def prefill(
    model, tokens: int = 256, batch: int = 1, warmup: int = 2, repeats: int = 7, stat=statistics.median
) -> float:
    """Seconds (``stat`` of the repeats) of one forward over a ``tokens``-token prompt."""
    import torch

    x = _inputs(batch, tokens, seed=1)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(x, use_cache=True)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return stat(times)


def measure(folders: dict, batch: int = 16, context: int = 128, prompt_tokens: int = 256, repeats: int = 40) -> dict:
    """``{stage: {params, decode_step_s, prefill_s}}`` (best of ``repeats``: the machine is shared, and the
    minimum is the least disturbed by other processes) plus ratios to the first stage."""
    import torch

    from asd.testbed.quality import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = {}
    for name, folder in folders.items():
        m = load_model(folder, "float32", "cpu")
        res[name] = {
            "params": sum(p.numel() for p in m.parameters()),
            "decode_step_s": decode_step(m, batch, context, repeats=repeats, stat=min),
            "prefill_s": prefill(m, prompt_tokens, repeats=max(3, repeats // 2), stat=min),
        }
    first = next(iter(res.values()))
    for r in res.values():
        r["decode_ratio"] = r["decode_step_s"] / first["decode_step_s"]
        r["prefill_ratio"] = r["prefill_s"] / first["prefill_s"]
    return {
        "batch": batch,
        "context": context,
        "prompt_tokens": prompt_tokens,
        "threads": torch.get_num_threads(),
        "stages": res,
    }
