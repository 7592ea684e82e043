"""GSM8K scoring: lm-evaluation-harness's metrics, reproduced exactly, and the project's own convention.

Four named metrics, each ``is_correct(output, gold, metric)`` → bool. ``output`` is the
model's generation *already cut at the stop strings* (``asd.eval.scoring.score_outputs``
cuts it, as lm-eval's ``until`` does); ``gold`` is the dataset's ``answer`` field (the
worked solution ending in ``#### N``, ``GSM8KItem.solution``) or the bare number ``N``.

``gsm8k_strict`` — lm-eval task ``gsm8k``, filter ``strict-match``:
    the *first* match of ``#### (\\-?[0-9\\.\\,]+)`` (group 1), else ``"[invalid]"``.
``gsm8k_flexible`` — lm-eval ``gsm8k`` (and ``gsm8k_cot``), filter ``flexible-extract``:
    the *last* match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (its first non-empty group), else
    ``"[invalid]"``.
``gsm8k_cot_strict`` — lm-eval ``gsm8k_cot``, filter ``strict-match``: the first match of
    ``The answer is (\\-?[0-9\\.\\,]+).`` (the ending of the chain-of-thought exemplars that
    the project's GSM8K prompt uses); its reference is ``gold.split("####")[-1].strip()``.

All three then compare with lm-eval's ``exact_match`` (``ignore_case: true``,
``ignore_punctuation: false``, ``regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]``,
applied to the prediction and to the reference): a *string* comparison, so ``18.00`` is not
``18``, and only ASCII ``-`` and ``0-9`` are read: ``−5`` (U+2212 minus sign) is read as ``5``
by the flexible filter and not at all by the strict ones; full-width digits (``１８``) are not
numbers. Building blocks: ``asd.eval.lmeval_match``.

``asd_numeric`` — the project's own, more lenient convention (``extract_number``):

1. the first number after the *last* ``####``, up to the end of the line it is on (whitespace
   and line breaks right after ``####`` are skipped); no number there → no answer;
2. else the number in the last ``\\boxed{...}``;
3. else the first number after the last "answer is" / "answer:" (chain-of-thought
   exemplars end in "The answer is N.");
4. else the last number anywhere.

A number is an optional ``-`` and ``$``, digits with optional thousands commas (groups of
three: ``1,000``; ``10,00`` is two numbers) and an optional decimal part; units, ``%`` and
a sentence's final period around it are ignored. Numbers compare as exact decimals:
``18`` = ``18.0`` = ``$18.00`` ≠ ``18.5``. Unicode, deliberately: the minus sign U+2212
(and the small and full-width hyphen-minus U+FE63, U+FF0D) reads as ``-``; full-width
digits, comma, full stop and dollar (U+FF10–FF19, U+FF0C, U+FF0E, U+FF04) read as their
ASCII forms; digits of other scripts (e.g. Arabic-Indic ``٣``) are not numbers.

The reports use ``REPORT_METRIC`` = ``gsm8k_flexible`` (docs/data.md says why).

Example::

    >>> is_correct("She makes 9 * 2 = $18 every day.\\n#### 18", "#### 18", "gsm8k_strict")
    True
    >>> [is_correct("The answer is 18.00.", "18", m) for m in ("gsm8k_flexible", "asd_numeric")]
    [False, True]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from asd.eval.lmeval_match import exact_match, regex_filter

# lm-eval 0.4.13, tasks/gsm8k/gsm8k.yaml and gsm8k-cot.yaml
LM_EVAL_REGEXES_TO_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")
STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
COT_STRICT_PATTERN = r"The answer is (\-?[0-9\.\,]+)."
# lm-eval's `until` for gsm8k_cot (the project's prompts stop at asd.data.prompts.STOP["gsm8k"])
LM_EVAL_COT_UNTIL = ("Q:", "</s>", "<|im_end|>")


@dataclass(frozen=True)
class LmEvalMetric:
    """One lm-eval GSM8K filter + ``exact_match``."""

    name: str
    pattern: str
    group_select: int  # 0: first match, -1: last
    reference: Callable[[str], str]  # the task's doc_to_target applied to the dataset's `answer`

    def extract(self, output: str) -> str:
        return regex_filter(output, self.pattern, self.group_select)

    def is_correct(self, output: str, gold: str) -> bool:
        return exact_match(self.extract(output), self.reference(gold), LM_EVAL_REGEXES_TO_IGNORE, ignore_case=True)


LM_EVAL = {
    m.name: m
    for m in (
        LmEvalMetric("gsm8k_strict", STRICT_PATTERN, 0, lambda a: a),  # gsm8k: doc_to_target "{{answer}}"
        LmEvalMetric("gsm8k_flexible", FLEXIBLE_PATTERN, -1, lambda a: a),
        LmEvalMetric("gsm8k_cot_strict", COT_STRICT_PATTERN, 0, lambda a: a.split("####")[-1].strip()),
    )
}
METRICS = (*LM_EVAL, "asd_numeric")
REPORT_METRIC = "gsm8k_flexible"

# ---- asd_numeric -------------------------------------------------------------------------------------------
_UNICODE = str.maketrans(
    {
        "\u2212": "-",  # MINUS SIGN
        "\ufe63": "-",  # SMALL HYPHEN-MINUS
        "\uff0d": "-",  # FULLWIDTH HYPHEN-MINUS
        "\uff0c": ",",
        "\uff0e": ".",
        "\uff04": "$",
        **{chr(0xFF10 + d): str(d) for d in range(10)},  # FULLWIDTH DIGIT ZERO..NINE
    }
)
_NUM = r"-?\$?\s?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|-?\$?\.[0-9]+"
NUMBER = re.compile(_NUM)
_AFTER_HASH = re.compile(r"####\s*(.*)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer(?:\s+is|\s*:)\s*(.*)", re.IGNORECASE)


def normalize(num: str) -> str | None:
    """``"$1,234.50"`` → ``"1234.50"`` (after the Unicode mapping above); None when it is not a number."""
    s = num.translate(_UNICODE).replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", s):
        return None
    return s


def _first_number(text: str) -> str | None:
    m = NUMBER.search(text)
    return normalize(m.group(0)) if m else None


def extract_number(text: str) -> str | None:
    """``asd_numeric``'s final answer in a model's output, normalised (see module docstring), or None."""
    text = text.translate(_UNICODE)
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


def _asd_gold(gold: str) -> str | None:
    return extract_number(gold) if "####" in gold else normalize(gold.strip())


# ---- the named metrics -------------------------------------------------------------------------------------
def check_metric(metric: str) -> None:
    """ValueError naming the valid metrics unless ``metric`` is one of ``METRICS``."""
    if metric not in METRICS:
        raise ValueError(f"unknown GSM8K metric {metric!r}; valid: {', '.join(METRICS)}")


def extract(output: str, metric: str = REPORT_METRIC) -> str | None:
    """What ``metric`` reads from ``output``: lm-eval's filtered string (``"[invalid]"`` when nothing
    matches) or ``asd_numeric``'s normalised number (None when there is none)."""
    check_metric(metric)
    return extract_number(output) if metric == "asd_numeric" else LM_EVAL[metric].extract(output)


def is_correct(output: str, gold: str, metric: str = REPORT_METRIC) -> bool:
    """Whether ``output`` answers ``gold`` (the dataset's ``answer`` field, or the bare number) under ``metric``."""
    check_metric(metric)
    if metric == "asd_numeric":
        return same_number(extract_number(output), _asd_gold(gold))
    return LM_EVAL[metric].is_correct(output, gold)


def accuracy(outputs: Sequence[str], golds: Sequence[str], metric: str = REPORT_METRIC) -> float:
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} outputs for {len(golds)} gold answers")
    if not golds:
        raise ValueError("no answers to score")
    return sum(is_correct(o, g, metric) for o, g in zip(outputs, golds)) / len(golds)
