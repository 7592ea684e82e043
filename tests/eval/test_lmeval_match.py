"""lm-eval's regex filter and exact_match: cases derived from its code, and (when importable) lm-eval itself.

The cross-checks import lm-eval's own ``RegexFilter``, ``TakeFirstFilter`` and ``exact_match_hf_evaluate``.
lm-eval is not a dependency of asd (it pulls torch, datasets, evaluate...); to run them, unpack its wheel
and sacrebleu's (``pip download --no-deps lm-eval``; ``pip install --no-deps --target DIR sacrebleu
portalocker tabulate colorama lxml``) and put both folders on PYTHONPATH. Without it they skip.
"""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asd.eval import gsm8k
from asd.eval.lmeval_match import FALLBACK, exact_match, normalise, regex_filter, truncate_at_stop

FIX = Path(__file__).resolve().parent.parent / "fixtures"
R = gsm8k.LM_EVAL_REGEXES_TO_IGNORE


def test_regex_filter_first_last_groups_fallback():
    assert regex_filter("#### 1\n#### 2", gsm8k.STRICT_PATTERN) == "1"
    assert regex_filter("#### 1\n#### 2", gsm8k.STRICT_PATTERN, -1) == "2"
    assert regex_filter("a 12 b 7", gsm8k.FLEXIBLE_PATTERN, -1) == "7"  # tuple ('', '7'): first non-empty group
    assert regex_filter("a 12 b 7", gsm8k.FLEXIBLE_PATTERN, 0) == "12"
    assert regex_filter("no number", gsm8k.STRICT_PATTERN) == FALLBACK == "[invalid]"
    assert regex_filter(None, gsm8k.FLEXIBLE_PATTERN, -1) == FALLBACK  # a non-string response counts as ""
    assert regex_filter("x:  42  ", r"x:(.*)") == "42"  # the pick is stripped
    assert regex_filter("ab", r"(a)|(b)|(c)", -1) == "b"
    assert regex_filter("ab", r"(x?)(y?)", 0) == FALLBACK  # only empty groups


def test_exact_match_normalisation():
    assert normalise("#### 1,000.", R, ignore_case=True) == "1000"
    assert normalise("Natalia...\n#### 72", R, ignore_case=True) == "72"  # (?s): across lines, up to the last "#### "
    assert normalise("#### 5 #### 6", R) == "6"
    assert normalise("$1,080.", R) == "1080"
    assert normalise("18..", R) == "18."  # one final period only
    assert normalise("18.\n", R) == "18\n"  # "$" also matches before a final newline
    assert exact_match("ABC", "abc", ignore_case=True) and not exact_match("ABC", "abc")
    assert exact_match("a.b!", "ab", ignore_punctuation=True) and not exact_match("a.b!", "ab")
    assert not exact_match("18 ", "18") and not exact_match("18.00", "18", R)


def test_exact_match_numpy_string_effects():
    # trailing NULs vanish in numpy string arrays; inner and leading ones stay
    assert exact_match("18\x00", "18") and exact_match("18\x00\x00", "18\x00", R)
    assert not exact_match("\x0018", "18") and not exact_match("1\x008", "18")
    # lower-casing keeps the length in code points ("İ".lower() is two code points)
    assert exact_match("İ", "i", ignore_case=True) and not exact_match("İ", "i̇", ignore_case=True)
    assert exact_match("aİ", "ai", ignore_case=True)
    assert exact_match("ΣΑΣ", "σας", ignore_case=True)  # str.lower's final sigma
    assert not exact_match("ß", "ss", ignore_case=True)  # lower, not casefold


def test_truncate_at_stop():
    assert truncate_at_stop("A: 5.\n\nQ: next 7", ["Q:", "\n\n\n"]) == "A: 5.\n\n"
    assert truncate_at_stop("x</s>y<|im_end|>z", gsm8k.LM_EVAL_COT_UNTIL) == "x"
    assert truncate_at_stop("abc", ["", "z"]) == "abc"


# ---- against lm-eval's own functions ----------------------------------------------------------------------
def _lm_eval():
    ext = pytest.importorskip("lm_eval.filters.extraction", reason="lm-eval not importable (see module docstring)")
    pytest.importorskip("sacrebleu", reason="lm-eval's api.metrics needs sacrebleu (see module docstring)")
    sel = pytest.importorskip("lm_eval.filters.selection")
    met = pytest.importorskip("lm_eval.api.metrics")
    return ext.RegexFilter, sel.TakeFirstFilter, met.exact_match_hf_evaluate


def _task_yaml(name):
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("lm_eval")
    p = Path(next(iter(spec.submodule_search_locations))) / "tasks/gsm8k" / name
    text = p.read_text().replace("!function", "")  # plain YAML apart from lm-eval's tag
    return yaml.safe_load(text)


def _lm_eval_scorer(task_yaml, filter_name):
    RegexFilter, TakeFirst, em = _lm_eval()
    filt = {f["name"]: f["filter"] for f in task_yaml["filter_list"]}[filter_name]
    assert [s["function"] for s in filt] == ["regex", "take_first"]
    rf = RegexFilter(regex_pattern=filt[0]["regex_pattern"], group_select=filt[0].get("group_select", 0))
    kw = {k: v for k, v in task_yaml["metric_list"][0].items() if k in ("regexes_to_ignore", "ignore_case",
                                                                         "ignore_punctuation")}

    def score(output, reference):
        pick = list(TakeFirst().apply(rf.apply([[output]], [{}]), [{}]))[0]
        return pick, bool(em(predictions=[pick], references=[reference], **kw)["exact_match"])

    return score, kw


def _pairs():
    from asd.data import gsm8k as data
    from asd.data.prepare import GSM8K_PACKAGE, _package_file

    rows = [json.loads(x) for x in (FIX / "gsm8k_outputs.jsonl").read_text().splitlines()]
    pairs = [(r["output"], r["gold"]) for r in rows]
    path = _package_file(*GSM8K_PACKAGE[:2])
    if path is not None:
        items = data.load(path).items
        pairs += [(it.solution, it.solution) for it in items]
        pairs += [(it.solution.replace("#### ", "The answer is ") + ".", it.solution) for it in items[:200]]
        pairs += [(a.solution, b.solution) for a, b in zip(items, items[1:300])]
    return pairs


@pytest.mark.parametrize(
    "task,lm_filter,ours",
    [
        ("gsm8k.yaml", "strict-match", "gsm8k_strict"),
        ("gsm8k.yaml", "flexible-extract", "gsm8k_flexible"),
        ("gsm8k-cot.yaml", "strict-match", "gsm8k_cot_strict"),
        ("gsm8k-cot.yaml", "flexible-extract", "gsm8k_flexible"),
    ],
)
def test_same_as_lm_eval_on_gold_and_model_style_answers(task, lm_filter, ours):
    _lm_eval()
    y = _task_yaml(task)
    score, kw = _lm_eval_scorer(y, lm_filter)
    assert tuple(kw["regexes_to_ignore"]) == R and kw["ignore_case"] and not kw["ignore_punctuation"]
    ref = gsm8k.LM_EVAL[ours].reference if task == "gsm8k-cot.yaml" else (lambda a: a)
    if task == "gsm8k-cot.yaml":  # its doc_to_target, as the YAML states it
        assert y["doc_to_target"].startswith("{{answer.split('####')[-1].strip()")
    pairs = _pairs()
    assert len(pairs) >= 90
    diff = []
    for out, gold in pairs:
        pick, ok = score(out, ref(gold))
        if pick != gsm8k.extract(out, ours) or ok != gsm8k.is_correct(out, gold, ours):
            diff.append((out, gold, pick, ok))
    assert diff == []


_ALPHABET = "0123456789.,$-#  \n\x00İΣaAT−１٣" + "The answer is "


@settings(max_examples=300, deadline=None)
@given(out=st.text(alphabet=_ALPHABET, max_size=40), gold=st.text(alphabet=_ALPHABET, max_size=12))
def test_same_as_lm_eval_on_random_strings(out, gold):
    RegexFilter, _, em = _lm_eval()
    for name, pat, sel in (("gsm8k_strict", gsm8k.STRICT_PATTERN, 0), ("gsm8k_flexible", gsm8k.FLEXIBLE_PATTERN, -1)):
        pick = RegexFilter(regex_pattern=pat, group_select=sel).apply([[out]], [{}])[0][0]
        assert pick == gsm8k.extract(out, name)
        ok = em(predictions=[pick], references=[gold], regexes_to_ignore=list(R), ignore_case=True)["exact_match"]
        assert bool(ok) == gsm8k.is_correct(out, gold, name)
    for case in (True, False):
        for punct in (True, False):
            ok = em(predictions=[out], references=[gold], regexes_to_ignore=list(R), ignore_case=case,
                    ignore_punctuation=punct)["exact_match"]
            assert bool(ok) == exact_match(out, gold, R, case, punct)
