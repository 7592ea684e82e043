"""Benchmark prompts of the non-test splits (the Qwen2.5 config), run with the testbed hierarchy standing in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from asd.cli import main
from asd.predictor_data import sources
from asd.predictor_data.config import PredictorDataConfig
from asd.predictor_data.schema import read_predictor_data

ROOT = Path(__file__).resolve().parents[2]
QWEN = str(ROOT / "configs/predictor_data_qwen2.5.yaml")
# invented grade-school problems in GSM8K's train.jsonl format (question, worked answer ending "#### N")
GSM8K_TRAIN = [
    {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?", "answer": "3+4=7\n#### 7"},
    {"question": "A box holds 6 pens. How many pens are in 2 boxes?", "answer": "6*2=12\n#### 12"},
    {"question": "Tom had 10 coins and lost 3. How many are left?", "answer": "10-3=7\n#### 7"},
]


def _data_dir(tmp: Path) -> Path:
    d = tmp / "data"
    (d / "mmlu" / "dev").mkdir(parents=True)
    shutil.copy(ROOT / "tests/fixtures/data/mmlu/dev/abstract_algebra_dev.csv", d / "mmlu" / "dev")
    (d / "gsm8k").mkdir()
    (d / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K_TRAIN))
    return d


def test_items_interleave_the_non_test_splits(tmp_path):
    d = str(_data_dir(tmp_path))
    assert sources.available(d, ("mmlu", "gsm8k", "humaneval")) == {
        "mmlu": {"dev": 5, "val": 0},
        "gsm8k": {"train": 3},
        "humaneval": {},
    }
    its = sources.items(d, ("mmlu", "gsm8k"))
    assert [(b.task, b.split) for b in its[:4]] == [("mmlu", "dev"), ("gsm8k", "train")] * 2 and len(its) == 8
    gen = PredictorDataConfig(source="benchmarks", tasks=["mmlu", "gsm8k"], data_dir=d)
    assert sources.sample_item(9, gen) == (its[1], 1)
    with pytest.raises(ValueError, match="8 non-test items .* < num_samples=9"):
        sources.check_available(gen, 9)


def test_mmlu_exemplars_never_hold_the_question(tmp_path):
    from asd.testbed.tokenizer import load_tokenizer

    d = str(_data_dir(tmp_path))
    gen = PredictorDataConfig(source="benchmarks", tasks=["mmlu"], data_dir=d)
    its = sources.items(d, ("mmlu",))
    tok = load_tokenizer()
    for b in its:
        text = sources.prompt_text(b, gen, tok)
        assert text.count(b.item.question) == 1  # asked once, never among the exemplars
        assert text.count("Answer:") == 5  # four exemplars (all other dev questions) + the question


def test_no_non_test_split_is_a_clear_error(tmp_path, capsys):
    args = ["generate-data", "--config", QWEN, "--hierarchy", str(ROOT / "configs/testbed.yaml"),
            "--set", f"predictor_data.data_dir={tmp_path}", "--output-dir", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no non-test split of ['mmlu', 'gsm8k']" in err and "mmlu: dev 0, val 0; gsm8k: train 0" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_qwen_config_runs_with_the_testbed_standing_in(tmp_path):
    d = _data_dir(tmp_path)
    args = [
        "generate-data", "--config", QWEN, "--hierarchy", str(ROOT / "configs/testbed.yaml"),
        "--executor", "in-process", "--num-samples", "4", "--output-dir", str(tmp_path / "out"),
        "--set", f"predictor_data.data_dir={d}", "--set", "predictor_data.fewshot=false",
        "--set", "predictor_data.max_new_tokens=8", "--set", "jobs.shards=1", "--set", "jobs.gpus_per_task=0",
    ]  # fmt: skip
    assert main(args) == 0
    data = read_predictor_data(tmp_path / "out" / "data.h5")
    assert list(data.data["task"]) == ["mmlu", "gsm8k", "mmlu", "gsm8k"] and (data.data["level"] == 0).all()
    assert data.attrs["source"] == "benchmarks" and data.attrs["stage_names"][0] == "testbed:s0"
    assert np.isfinite(data.data["features"]).all() and set(np.unique(data.data["score"])) <= {0.0, 1.0}
    assert len(np.unique(data.data["prompt_key"])) == 4
