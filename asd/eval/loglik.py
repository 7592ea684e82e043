"""Log-likelihood of given continuations, for multiple-choice metrics (MMLU, TruthfulQA MC).

Everything goes through one small callable, so any engine works::

    score_fn(prompts: list[list[int]], continuations: list[list[int]]) -> list[np.ndarray]
        # B × [n_i] float: log p(continuation[i][t] | prompt[i], continuation[i][:t]), nats

``engine_score_fn(engine)`` adapts ``asd.models.base.Engine.score``;
``hf_score_fn(model)`` is a plain transformers twin (one padded forward per batch).
Strings are tokenised as lm-evaluation-harness does (``encode_pair``): the context's
trailing spaces move to the continuation and the continuation's tokens are those of
``context + continuation`` after the context's own tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ScoreFn = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], Sequence[np.ndarray]]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` as it follows that context."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx) :]


def choice_logliks(
    score_fn: ScoreFn,
    contexts: Sequence[Sequence[int]],
    choices: Sequence[Sequence[Sequence[int]]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[np.ndarray]:
    """Summed log-likelihood of each choice after its question's context.

    contexts: Q × [len_q] token ids; choices: Q × [C_q] × [len_qc] token ids (non-empty).
    Returns Q × [C_q] float64 (nats). Pairs are flattened and scored ``batch_size`` at a time
    (``progress``: a tqdm bar over the pairs, with rate and ETA).
    """
    if len(contexts) != len(choices):
        raise ValueError(f"{len(contexts)} contexts for {len(choices)} choice lists")
    pairs = [(q, c) for q, cs in enumerate(choices) for c in range(len(cs))]
    for q, c in pairs:
        if len(choices[q][c]) == 0:
            raise ValueError(f"question {q}, choice {c}: empty continuation")
    out = [np.zeros(len(cs), dtype=np.float64) for cs in choices]
    from tqdm import tqdm

    bar = tqdm(total=len(pairs), desc="log-likelihood", unit="choice", disable=not progress, mininterval=2.0)
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        lps = score_fn([list(contexts[q]) for q, _ in chunk], [list(choices[q][c]) for q, c in chunk])
        for (q, c), lp in zip(chunk, lps):
            lp = np.asarray(lp, dtype=np.float64)
            assert lp.shape == (len(choices[q][c]),), (lp.shape, len(choices[q][c]))
            out[q][c] = lp.sum()
        bar.update(len(chunk))
    bar.close()
    return out


def engine_score_fn(engine) -> ScoreFn:
    """``score_fn`` through an ``asd.models.base.Engine``."""
    return lambda prompts, conts: engine.score(prompts, conts).logprobs


def hf_score_fn(model, pad_id: int = 0) -> ScoreFn:
    """``score_fn`` for a transformers causal LM: one right-padded forward per batch, on the model's device."""
    import torch

    def score(prompts, conts):
        seqs = [list(p) + list(c) for p, c in zip(prompts, conts)]
        n = max(map(len, seqs))
        ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        dev = next(model.parameters()).device
        with torch.no_grad():
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()  # [B, n, V]
        logp = torch.log_softmax(logits, dim=-1)
        out = []
        for i, (p, c) in enumerate(zip(prompts, conts)):
            pos = torch.arange(len(p) - 1, len(p) + len(c) - 1, device=dev)  # position predicting each c[t]
            out.append(logp[i, pos, torch.tensor(list(c), device=dev)].cpu().numpy())
        return out

    return score
