"""One entry point per scoring mode, for the cascade and the reports.

- ``score_outputs(task, items, outputs)`` → ``[N] float32``, 1.0 correct / 0.0 wrong, from
  generated text (the traces' ``score`` column): MMLU answer letter, GSM8K by the named metric
  ``gsm8k_metric`` (default ``asd.eval.gsm8k.REPORT_METRIC``, lm-eval's flexible-extract; the
  output is first cut at the prompt's stop strings ``asd.data.prompts.STOP["gsm8k"]``, as
  lm-eval cuts at its ``until``, since the engines stop only at EOS), HumanEval pass in the
  sandbox. TruthfulQA's generative metric needs a judge model, so it is scored by
  log-likelihood only.
- ``mc_scores(task, items, contexts, tokenizer, score_fn)`` → per-item arrays from the
  log-likelihood of the choices: MMLU ``acc``; TruthfulQA ``mc1`` and ``mc2``.

``items`` are the records of ``asd.data`` (``MMLUItem``, ``GSM8KItem``,
``HumanEvalProblem``, ``TruthfulQAItem``); ``contexts`` the prompt texts
(``asd.data.prompts.build_prompt(...).text``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asd.eval.loglik import ScoreFn, choice_logliks, encode_pair


def score_outputs(
    task: str,
    items: Sequence,
    outputs: Sequence[str],
    sandbox=None,
    progress: bool = False,
    gsm8k_metric: str | None = None,
) -> np.ndarray:
    """[N] float32 1.0/0.0 per generated output (see module docstring)."""
    if len(items) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
    if task == "mmlu":
        from asd.eval.mmlu import LETTERS, extract_letter

        ok = [extract_letter(o) == LETTERS[it.answer] for it, o in zip(items, outputs)]
    elif task == "gsm8k":
        from asd.data.prompts import STOP
        from asd.eval.gsm8k import REPORT_METRIC, check_metric, is_correct
        from asd.eval.lmeval_match import truncate_at_stop

        metric = gsm8k_metric or REPORT_METRIC
        check_metric(metric)
        ok = [is_correct(truncate_at_stop(o, STOP["gsm8k"]), it.solution, metric) for it, o in zip(items, outputs)]
    elif task == "humaneval":
        from asd.eval.humaneval import check_from_output
        from asd.eval.sandbox import run_many

        ok = [
            r.passed
            for r in run_many([check_from_output(it, o) for it, o in zip(items, outputs)], sandbox, progress=progress)
        ]
    elif task == "truthfulqa":
        raise ValueError("truthfulqa generations need a judge model; score TruthfulQA with mc_scores (MC1/MC2)")
    else:
        raise ValueError(f"unknown task {task!r}; valid: mmlu, gsm8k, humaneval, truthfulqa")
    return np.asarray(ok, dtype=np.float32)


def mc_scores(
    task: str,
    items: Sequence,
    contexts: Sequence[str],
    tokenizer,
    score_fn: ScoreFn,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-item log-likelihood scores: MMLU ``{"acc": [N]}``, TruthfulQA ``{"mc1": [N], "mc2": [N]}`` (float32).

    TruthfulQA as lm-eval's ``truthfulqa_mc1`` / ``truthfulqa_mc2`` (``asd.eval.truthfulqa``): each choice
    is the continuation ``" " + choice`` of the prompt."""
    if len(items) != len(contexts):
        raise ValueError(f"{len(contexts)} contexts for {len(items)} items")
    if task == "mmlu":
        sets = [([" A", " B", " C", " D"], [int(i == it.answer) for i in range(4)]) for it in items]
    elif task == "truthfulqa":
        sets = [
            ([" " + c for c in it.mc1_choices + it.mc2_choices], list(it.mc1_labels) + list(it.mc2_labels))
            for it in items
        ]
    else:
        raise ValueError(f"{task} has no multiple-choice scoring; valid: mmlu, truthfulqa")
    ctx_ids, choice_ids = [], []
    for ctx, (choices, _) in zip(contexts, sets):
        pairs = [encode_pair(tokenizer, ctx, c) for c in choices]
        ctx_ids.append(pairs[0][0])
        choice_ids.append([p[1] for p in pairs])
    lls = choice_logliks(score_fn, ctx_ids, choice_ids, batch_size, progress=progress)
    if task == "mmlu":
        return {"acc": np.array([float(np.argmax(ll) == it.answer) for ll, it in zip(lls, items)], dtype=np.float32)}
    from asd.eval.truthfulqa import mc1, mc2

    out1, out2 = [], []
    for ll, it in zip(lls, items):
        n1 = len(it.mc1_choices)
        out1.append(mc1(ll[:n1], it.mc1_labels))
        out2.append(mc2(ll[n1:], it.mc2_labels))
    return {"mc1": np.array(out1, dtype=np.float32), "mc2": np.array(out2, dtype=np.float32)}
