"""lm-evaluation-harness's ``regex`` filter and ``exact_match`` metric, reproduced exactly (lm-eval 0.4).

These are the two building blocks of lm-eval's generative scoring (``filter_list`` and
``metric_list: exact_match`` in a task YAML); ``asd.eval.gsm8k`` assembles lm-eval's GSM8K
metrics from them. Written from lm-eval 0.4.13's ``filters/extraction.py`` (``RegexFilter``),
``filters/selection.py`` (``take_first``) and ``api/metrics.py`` (``exact_match_hf_evaluate``),
and checked against those functions (tests/eval/test_lmeval_match.py).

``regex_filter(response, pattern, group_select, fallback)``:
  all non-overlapping matches of ``pattern`` (Python ``re.findall``); none → ``fallback``
  (``"[invalid]"``); else the match at index ``group_select`` (0 = first, -1 = last). A
  pattern with several groups yields a tuple per match: the first non-empty group is taken
  (all empty → ``fallback``). The result is ``.strip()``-ed. A non-string response counts
  as ``""``. lm-eval's ``take_first`` then keeps the first of the *sampled responses*
  (one per request with ``repeats: 1``), not the first match, so it does nothing here.

``exact_match(prediction, reference, regexes_to_ignore, ignore_case, ignore_punctuation)``:
  each regex of ``regexes_to_ignore``, in order, is removed from both strings
  (``re.sub(r, "", s)``: every occurrence); then ``ignore_case`` lower-cases both and
  ``ignore_punctuation`` deletes ``string.punctuation``; the strings must then be equal.
  lm-eval does this on numpy string arrays, whose two effects we reproduce on purpose:

  - trailing NUL characters (``"\\x00"``) vanish whenever a string goes into a numpy
    array (after each regex and after lower-casing): ``"18\\x00"`` equals ``"18"``;
  - lower-casing keeps the string's length in code points: ``str.lower`` is applied and
    the result cut to the input's length (``"İ"`` → ``"i"``, not ``"i̇"``). lm-eval calls the
    metric once per document with one prediction and one reference, so that length is the
    string's own.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

FALLBACK = "[invalid]"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def regex_filter(response: object, pattern: str, group_select: int = 0, fallback: str = FALLBACK) -> str:
    """lm-eval's ``regex`` filter on one response (see module docstring)."""
    text = response if isinstance(response, str) else ""
    found = re.findall(pattern, text)
    if not found:
        return fallback
    pick = found[group_select]
    if isinstance(pick, tuple):
        pick = next((g for g in pick if g), fallback)
    return pick.strip()


def _as_numpy_str(s: str) -> str:
    """What a numpy unicode array keeps of ``s``: everything but trailing NULs."""
    return s.rstrip("\x00")


def normalise(
    s: str, regexes_to_ignore: Sequence[str] = (), ignore_case: bool = False, ignore_punctuation: bool = False
) -> str:
    """One side of lm-eval's ``exact_match``, after its regexes, case folding and punctuation removal."""
    for r in regexes_to_ignore:
        s = _as_numpy_str(re.sub(r, "", s))
    s = _as_numpy_str(s)
    if ignore_case:
        s = _as_numpy_str(s.lower()[: len(s)])
    if ignore_punctuation:
        s = s.translate(_PUNCTUATION)
    return s


def exact_match(
    prediction: str,
    reference: str,
    regexes_to_ignore: Sequence[str] = (),
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
) -> bool:
    """lm-eval's ``exact_match`` of one prediction against one reference (see module docstring)."""
    a = normalise(prediction, regexes_to_ignore, ignore_case, ignore_punctuation)
    return a == normalise(reference, regexes_to_ignore, ignore_case, ignore_punctuation)


def truncate_at_stop(text: str, until: Sequence[str]) -> str:
    """The generation as lm-eval keeps it: cut before the first occurrence of each ``until`` string in turn."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
