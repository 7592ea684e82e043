"""GSM8K's four named metrics: the 1,319 gold answers, and model-style answers with every verdict written out.

tests/fixtures/gsm8k_outputs.jsonl: per output and gold, what lm-eval's strict / flexible / gsm8k_cot strict
filters pick and the verdict of each metric (derived by hand from lm-eval's regexes and exact_match rules;
test_lmeval_match.py checks the same rows against lm-eval's own functions).
"""
import json
from pathlib import Path

import pytest

from asd.data import gsm8k as gsm8k_data
from asd.data.prepare import GSM8K_PACKAGE, _package_file
from asd.eval.gsm8k import METRICS, REPORT_METRIC, accuracy, extract, extract_number, is_correct, normalize

GSM = _package_file(*GSM8K_PACKAGE[:2])
ROWS = [json.loads(x) for x in (Path(__file__).resolve().parent.parent / "fixtures/gsm8k_outputs.jsonl").open()]


@pytest.fixture(scope="module")
def items():
    if GSM is None:
        pytest.skip(f"{GSM8K_PACKAGE[2]} not installed (it ships the GSM8K test split)")
    items = gsm8k_data.load(GSM).items
    assert len(items) == 1319
    return items


def test_gold_solutions(items):
    sols = [it.solution for it in items]
    assert accuracy(sols, sols, "gsm8k_strict") == 1.0
    assert accuracy(sols, sols, "gsm8k_flexible") == 1.0
    assert accuracy(sols, sols, "asd_numeric") == 1.0
    assert accuracy(sols, sols, "gsm8k_cot_strict") == 0.0  # no "The answer is N." in the solutions
    # the same solutions ending in the chain-of-thought form instead of "#### N"
    cot = [s.replace("#### ", "The answer is ") + "." for s in sols]
    assert accuracy(cot, sols, "gsm8k_cot_strict") == accuracy(cot, sols, "gsm8k_flexible") == 1.0
    assert accuracy(cot, sols, "asd_numeric") == 1.0 and accuracy(cot, sols, "gsm8k_strict") == 0.0
    # the gold may be the whole answer field or the bare number (GSM8KItem.answer): same verdicts
    for m in METRICS:
        assert all(is_correct(s, it.answer, m) == is_correct(s, it.solution, m) for s, it in zip(sols[:300], items))


def test_gold_solutions_are_wrong_for_the_next_question(items):
    for m in ("gsm8k_strict", "gsm8k_flexible", "asd_numeric"):
        pairs = [(a.solution, b.solution) for a, b in zip(items, items[1:]) if a.answer != b.answer]
        assert len(pairs) > 1000 and not any(is_correct(o, g, m) for o, g in pairs), m


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}:{r['output'][:30]!r}" for i, r in enumerate(ROWS)])
def test_model_style_answers(row):
    for m, want in row["extract"].items():
        assert extract(row["output"], m) == want, m
    for m, want in row["correct"].items():
        assert is_correct(row["output"], row["gold"], m) is want, m


def test_enough_cases_both_verdicts_and_the_differences_say_why():
    assert len(ROWS) >= 50
    for m in METRICS:
        n_ok = sum(r["correct"][m] for r in ROWS)
        assert n_ok >= 10 and len(ROWS) - n_ok >= 10, m
    # every case where the project's convention and the reports' metric disagree says why
    differ = [r for r in ROWS if r["correct"]["asd_numeric"] != r["correct"][REPORT_METRIC]]
    assert len(differ) >= 10 and all(r["note"] for r in differ)


def test_unicode_minus_and_full_width_digits():
    # lm-eval: only ASCII '-' and 0-9 are read
    assert extract("The answer is \u22125.", "gsm8k_flexible") == "5."
    assert extract("#### \u22125", "gsm8k_strict") == "[invalid]"
    assert extract("#### \uff11\uff18", "gsm8k_strict") == extract("\uff11\uff18", "gsm8k_flexible") == "[invalid]"
    # asd_numeric: U+2212 (and U+FE63, U+FF0D) is a minus; full-width digits, comma, point and $ are ASCII
    for minus in "\u2212\ufe63\uff0d-":
        assert extract_number(f"It is {minus}5 degrees.") == "-5"
    assert extract_number("\uff04\uff11\uff0c\uff12\uff13\uff14\uff0e\uff15") == "1234.5"
    assert is_correct("#### \uff11\uff18", "18", "asd_numeric") and is_correct("18", "\uff11\uff18", "asd_numeric")
    # en dash and hyphen are not minus signs; digits of other scripts are not numbers
    assert extract_number("pages 3\u20135") == "5" and extract_number("\u0663\u0664") is None
    assert extract_number("\u0968\u0966") is None  # Devanagari 20


def test_named_metric_errors_and_defaults():
    assert REPORT_METRIC == "gsm8k_flexible" and REPORT_METRIC in METRICS
    assert normalize("$1,234.50") == "1234.50" and normalize("abc") is None and normalize("1e5") is None
    assert accuracy(["#### 1", "#### 3"], ["1", "2"]) == 0.5
    with pytest.raises(ValueError, match="2 outputs for 1"):
        accuracy(["a", "b"], ["1"])
    with pytest.raises(ValueError, match="valid: gsm8k_strict, gsm8k_flexible, gsm8k_cot_strict, asd_numeric"):
        is_correct("1", "1", "exact")
