"""GSM8K numeric exact match, in the manner of lm-evaluation-harness.

``extract_answer(text)`` finds the model's final number, trying in order:

1. the number after the last ``####`` (the dataset's own answer format; lm-eval "strict-match");
2. the number in the last ``\\boxed{...}``;
3. the number after the last "answer is" / "answer:" (chain-of-thought exemplars end in
   "The answer is N.");
4. the last number anywhere in the text (lm-eval "flexible-extract").

Numbers may carry ``$``, thousands separators (``1,000``), a trailing ``%`` or unit
words and a sentence's final period; they compare as exact decimals, so ``18``,
``18.0`` and ``$18.00`` are the same answer and ``18.5`` is not ``18``.

Example::

    >>> is_correct("She makes 9 * 2 = $18 every day.\\n#### 18", "18")
    True
    >>> extract_answer("The total is $1,234.50 dollars.")
    '1234.50'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_NUM = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\$?\.\d+"
NUMBER = re.compile(_NUM)
_AFTER_HASH = re.compile(r"####\s*(.*)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer(?:\s+is|\s*:)\s*(.*)", re.IGNORECASE)


def normalize(num: str) -> str | None:
    """``"$1,234.50"`` → ``"1234.50"``; None when it is not a number."""
    s = num.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        Decimal(s)
    except InvalidOperation:
        return None
    return s


def _first_number(text: str) -> str | None:
    m = NUMBER.search(text)
    return normalize(m.group(0)) if m else None


def extract_answer(text: str) -> str | None:
    """The final numeric answer in a model's output, normalised (see module docstring), or None."""
    hashes = _AFTER_HASH.findall(text)
    if hashes:
        return _first_number(hashes[-1])
    boxed = _BOXED.findall(text)
    if boxed and (n := _first_number(boxed[-1])) is not None:
        return n
    said = _ANSWER_IS.findall(text)
    if said and (n := _first_number(said[-1])) is not None:
        return n
    nums = NUMBER.findall(text)
    return normalize(nums[-1]) if nums else None


def same_number(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def is_correct(output: str, gold: str) -> bool:
    """Exact numeric match of the model's final answer with the gold answer (``GSM8KItem.answer``)."""
    return same_number(extract_answer(output), normalize(gold))


def accuracy(outputs: Sequence[str], golds: Sequence[str]) -> float:
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} outputs for {len(golds)} gold answers")
    if not golds:
        raise ValueError("no answers to score")
    return sum(is_correct(o, g) for o, g in zip(outputs, golds)) / len(golds)
