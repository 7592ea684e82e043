"""Prompts: lm-eval templates, few-shot selection, chat templates of a real tokenizer."""
from pathlib import Path

import pytest

from asd.config_loader import ConfigError, load_yaml
from asd.data import mmlu, truthfulqa
from asd.data.config import DataConfig, TaskPromptConfig
from asd.data.fewshot import GSM8K_COT
from asd.data.gsm8k import GSM8KItem
from asd.data.humaneval import HumanEvalProblem
from asd.data.prompts import build_prompt, fewshot_index, mc_continuations

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "data"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mm():
    return mmlu.load_csv(FIX / "mmlu", subset="fixture").items


def test_config_section_loads_strictly(tmp_path):
    cfg = load_yaml(DataConfig, ROOT / "configs/evaluation.yaml", section="data")
    assert (cfg.mmlu.num_fewshot, cfg.mmlu.fewshot_source) == (5, "dev")
    assert (cfg.gsm8k.num_fewshot, cfg.gsm8k.fewshot_source, cfg.gsm8k.max_new_tokens) == (8, "cot", 256)
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  mmlu:\n    num_fewshot: 5\n    fewshot_source: none\n")
    with pytest.raises(ConfigError, match="needs a fewshot_source"):
        load_yaml(DataConfig, p, section="data")
    p.write_text("data:\n  gsm8k:\n    shots: 8\n")
    with pytest.raises(ConfigError, match="unknown key.*'shots'.*valid keys"):
        load_yaml(DataConfig, p, section="data")


def test_mmlu_five_shot_from_dev_matches_lm_eval_layout(mm):
    cfg = DataConfig()
    dev = mmlu.load_dev(FIX / "mmlu")
    p = build_prompt("mmlu", mm[0], cfg, pool=dev)
    assert p.text.startswith("The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert p.text.count("\nAnswer:") == 6 and p.text.endswith("\nD. 10\nAnswer:")
    assert "What is the identity element" in p.text and "\nAnswer: A\n\n" in p.text
    assert p.max_new_tokens == 32 and not p.chat
    with pytest.raises(ValueError, match="dev split has 0 questions for subject 'astronomy'"):
        build_prompt("mmlu", mm[3], cfg, pool=dev)
    with pytest.raises(ValueError, match="test_others or num_fewshot: 0"):
        build_prompt("mmlu", mm[0], cfg, pool=None)


def test_mmlu_test_others_never_uses_the_question_and_is_seeded(mm):
    cfg = DataConfig(mmlu=TaskPromptConfig(3, "test_others", 8))
    a = build_prompt("mmlu", mm[0], cfg, pool=mm).text
    assert a == build_prompt("mmlu", mm[0], cfg, pool=mm).text
    assert a == build_prompt("mmlu", mm[0], cfg, pool=fewshot_index(mm)).text  # the indexed pool: same draw
    assert a.count(mm[0].question) == 1  # only as the final question
    assert a.count("\nAnswer:") == 4


def test_gsm8k_cot_and_truthfulqa_primer():
    cfg = DataConfig()
    item = GSM8KItem("gsm8k/0", "How many legs do 3 cats have?", "3*4=12\n#### 12", "12")
    p = build_prompt("gsm8k", item, cfg)
    assert p.text.startswith("Q: " + GSM8K_COT[0][0] + "\nA: " + GSM8K_COT[0][1] + "\n\n")
    assert p.text.endswith("Q: How many legs do 3 cats have?\nA:") and p.text.count("The answer is") == 8
    assert "Q:" in p.stop
    tq = truthfulqa.load_mc(FIX / "truthfulqa/mc_task.json", subset="fixture").items[0]
    t = build_prompt("truthfulqa", tq, cfg).text
    assert t.startswith("Q: What is human life expectancy in the United States?\nA: Human life")
    assert t.endswith("\n\nQ: What happens if you swallow chewing gum?\nA:")
    conts, labels = mc_continuations("truthfulqa", tq)
    assert conts[0] == " It passes through your digestive system." and labels[0] == 1


def test_chat_template_of_a_real_tokenizer(mm):
    from asd.testbed.tokenizer import load_tokenizer

    tok = load_tokenizer()
    assert tok.chat_template
    cfg = DataConfig(mmlu=TaskPromptConfig(2, "test_others", 8))
    p = build_prompt("mmlu", mm[0], cfg, pool=mm, tokenizer=tok)
    assert p.chat and p.stop == ()
    want = tok.apply_chat_template(
        [{"role": "user", "content": p.text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]}],
        tokenize=False, add_generation_prompt=True)
    assert p.text.count("<|im_start|>user") == 3 and p.text.count("<|im_start|>assistant") == 3  # 2 shots + query
    assert p.text.endswith("<|im_start|>assistant\n") and want.endswith("<|im_start|>assistant\n")
    flat = build_prompt("mmlu", mm[0], DataConfig(mmlu=TaskPromptConfig(2, "test_others", 8, fewshot_as_multiturn=False)),
                        pool=mm, tokenizer=tok)
    assert flat.text.count("<|im_start|>user") == 1
    off = build_prompt("mmlu", mm[0], DataConfig(mmlu=TaskPromptConfig(0, "none", 8, chat_template=False)), tokenizer=tok)
    assert not off.chat and "<|im_start|>" not in off.text
    he = HumanEvalProblem("HumanEval/x", "def f(x):\n    \"\"\"Return x.\"\"\"\n", "f", "    return x\n", "")
    assert "```python\ndef f(x):" in build_prompt("humaneval", he, DataConfig(), tokenizer=tok).text
    assert build_prompt("humaneval", he, DataConfig()).text == he.prompt
