"""Shared references for engine and cascade tests: transformers' own greedy generate on ragged batches.

(tests/ is on sys.path through tests/conftest.py, so test modules import this as ``hf_reference``.)
"""
import numpy as np
import torch


def ragged_prompts(n, seed=0, lo=1, hi=24, vocab=99):
    """``n`` prompts of random ids in [3, vocab) with lengths in [lo, hi)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, size=rng.integers(lo, hi)).tolist() for _ in range(n)]


def hf_generate(model, prompts, max_new, eos):
    """transformers' greedy ``generate`` on a left-padded batch (on the model's device), cut after the first EOS."""
    dev = next(model.parameters()).device
    L = max(map(len, prompts))
    ids = torch.zeros(len(prompts), L, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(p)
        am[i, L - len(p):] = 1
    out = model.generate(input_ids=ids.to(dev), attention_mask=am.to(dev), do_sample=False,
                         max_new_tokens=max_new, eos_token_id=eos, pad_token_id=0).cpu()
    res = []
    for i in range(len(prompts)):
        o = out[i, L:].tolist()
        res.append(o[:o.index(eos) + 1] if eos in o else o)
    return res
