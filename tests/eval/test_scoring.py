"""score_outputs / mc_scores: the per-item scores the cascade writes, with a real tokenizer and model."""
from pathlib import Path

import numpy as np
import pytest

from asd.data import mmlu, truthfulqa
from asd.data.config import DataConfig, TaskPromptConfig
from asd.data.gsm8k import GSM8KItem
from asd.data.humaneval import HumanEvalProblem
from asd.data.prompts import build_prompt
from asd.eval.loglik import hf_score_fn
from asd.eval.scoring import mc_scores, score_outputs

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "data"


def test_score_outputs_generative():
    mm = mmlu.load_csv(FIX / "mmlu", subset="fixture").items[:3]
    assert score_outputs("mmlu", mm, ["C", "The answer is A", "D"]).tolist() == [1.0, 0.0, 1.0]
    g = [GSM8KItem("g/0", "q", "#### 1,000", "1000"), GSM8KItem("g/1", "q", "#### 7", "7")]
    out = score_outputs("gsm8k", g, ["So 1,000 dollars.\n#### 1,000", "The answer is 8."])
    assert out.dtype == np.float32 and out.tolist() == [1.0, 0.0]
    he = [HumanEvalProblem("t/0", "def f(x):\n", "f", "    return x\n", "def check(c):\n    assert c(2) == 2\n")] * 2
    assert score_outputs("humaneval", he, ["    return x\n", "    return 0\n"]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="judge"):
        score_outputs("truthfulqa", [], [])
    with pytest.raises(ValueError, match="2 outputs for 1"):
        score_outputs("gsm8k", g[:1], ["a", "b"])


def test_score_outputs_gsm8k_metrics_and_stop_strings():
    g = [GSM8KItem("g/0", "q", "3 + 1 = 4\n#### 4", "4")] * 4
    outs = ["#### 4\n\nQ: next question with 99", "The answer is 4.\n\n\nAnd 12 more", "The answer is 4.00.", "4 ####"]
    # the default is lm-eval's flexible-extract, on the output cut at "Q:" / "\n\n\n" (else 99 and 12 are last)
    assert score_outputs("gsm8k", g, outs).tolist() == [1.0, 1.0, 0.0, 1.0]
    assert score_outputs("gsm8k", g, outs, gsm8k_metric="gsm8k_strict").tolist() == [1.0, 0.0, 0.0, 0.0]
    assert score_outputs("gsm8k", g, outs, gsm8k_metric="gsm8k_cot_strict").tolist() == [0.0, 1.0, 0.0, 0.0]
    assert score_outputs("gsm8k", g, outs, gsm8k_metric="asd_numeric").tolist() == [1.0, 1.0, 1.0, 0.0]  # nothing after ####
    with pytest.raises(ValueError, match="unknown GSM8K metric 'exact'; valid: gsm8k_strict"):
        score_outputs("gsm8k", [], [], gsm8k_metric="exact")


def test_mc_scores_with_a_real_tokenizer_and_model():
    torch = pytest.importorskip("torch")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from asd.testbed.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=2048)).eval()
    items = mmlu.load_csv(FIX / "mmlu", subset="fixture").items
    cfg = DataConfig(mmlu=TaskPromptConfig(0, "none", 8, chat_template=False))
    ctx = [build_prompt("mmlu", it, cfg).text for it in items]
    acc = mc_scores("mmlu", items, ctx, tok, hf_score_fn(model))["acc"]

    def logp(text):  # log P(text[1:] | first token) from one plain forward
        ids = tok.encode(text, add_special_tokens=False)
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        return float(sum(lp[t - 1, ids[t]] for t in range(1, len(ids))))

    want = [float(np.argmax([logp(c + f" {L}") for L in "ABCD"]) == it.answer) for c, it in zip(ctx, items)]
    assert acc.tolist() == want
    tq = truthfulqa.load_mc(FIX / "truthfulqa/mc_task.json", subset="fixture").items
    tctx = [build_prompt("truthfulqa", it, DataConfig()).text for it in tq]
    s = mc_scores("truthfulqa", tq, tctx, tok, hf_score_fn(model))
    for c, it, m1, m2 in zip(tctx, tq, s["mc1"], s["mc2"]):
        base = logp(c)
        l1 = np.array([logp(c + " " + a) - base for a in it.mc1_choices])
        l2 = np.array([logp(c + " " + a) - base for a in it.mc2_choices])
        assert m1 == float(np.argmax(l1) == it.mc1_labels.index(1))
        p2 = np.exp(l2 - l2.max())
        assert m2 == pytest.approx(p2[np.array(it.mc2_labels) == 1].sum() / p2.sum(), rel=1e-4)
