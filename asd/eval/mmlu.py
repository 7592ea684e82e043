"""MMLU accuracy: from generated text (answer letter) or by log-likelihood of the choices.

Generative: ``extract_letter`` reads the model's choice from its output
("B", "(B)", "B. Genetic drift", "The answer is B", "Answer: B"...); an output with
no recognisable letter counts as wrong, never as a guess.

Log-likelihood (lm-evaluation-harness's ``mmlu``): the prompt ends in ``"Answer:"``
and each choice is the continuation ``" A"`` .. ``" D"``; the prediction is the
choice of highest log-likelihood (``ll_predictions``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from asd.eval.loglik import ScoreFn, choice_logliks

LETTERS = "ABCD"
_SAID = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*\(?\**([ABCD])\**\)?(?![A-Za-z])", re.IGNORECASE)
_LEADING = re.compile(r"^\s*[\*\(\[]*([ABCD])(?:[\*\)\]\.:,]|\s|$)")


def extract_letter(text: str, letters: str = LETTERS) -> str | None:
    """The chosen letter in a model's output, or None when there is none to read."""
    said = [m.group(1).upper() for m in _SAID.finditer(text)]
    said = [x for x in said if x in letters]
    if said:
        return said[-1]
    m = _LEADING.match(text)
    if m and m.group(1) in letters:
        return m.group(1)
    return None


def accuracy(outputs: Sequence[str], answers: Sequence[int]) -> float:
    """Share of outputs whose letter equals ``LETTERS[answer]``; answers are indices 0..3."""
    if len(outputs) != len(answers):
        raise ValueError(f"{len(outputs)} outputs for {len(answers)} answers")
    if not answers:
        raise ValueError("no answers to score")
    return sum(extract_letter(o) == LETTERS[a] for o, a in zip(outputs, answers)) / len(answers)


def ll_predictions(
    score_fn: ScoreFn,
    contexts: Sequence[Sequence[int]],
    choice_ids: Sequence[Sequence[Sequence[int]]],
    batch_size: int = 32,
) -> np.ndarray:
    """[Q] int64 index of the most likely choice per question (ties → the first)."""
    lls = choice_logliks(score_fn, contexts, choice_ids, batch_size)
    return np.array([int(np.argmax(x)) for x in lls], dtype=np.int64)


def ll_accuracy(score_fn: ScoreFn, contexts, choice_ids, answers: Sequence[int], batch_size: int = 32) -> float:
    pred = ll_predictions(score_fn, contexts, choice_ids, batch_size)
    return float(np.mean(pred == np.asarray(answers)))
