"""MMLU letter extraction and log-likelihood accuracy, TruthfulQA MC1/MC2 — with a real tiny Qwen2 model."""
import math

import numpy as np
import pytest

from asd.eval import mmlu as mm
from asd.eval import truthfulqa as tq
from asd.eval.loglik import choice_logliks, encode_pair, engine_score_fn, hf_score_fn

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return Qwen2ForCausalLM(cfg).eval()


def joint_logprob(model, ids):
    """log P(ids[1:] | ids[0]) from one unpadded forward: an independent path to the same quantity."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return float(sum(lp[t - 1, ids[t]] for t in range(1, len(ids))))


def test_choice_logliks_equal_chain_rule_on_a_real_model(model):
    rng = np.random.default_rng(0)
    contexts = [list(rng.integers(1, 128, size=n)) for n in (5, 17, 9)]
    choices = [[list(rng.integers(1, 128, size=m)) for m in ms] for ms in ((1, 1, 1, 1), (3, 1, 6), (2, 4))]
    got = choice_logliks(hf_score_fn(model), contexts, choices, batch_size=3)  # batches mix lengths (padding)
    for q, ctx in enumerate(contexts):
        for c, ch in enumerate(choices[q]):
            want = joint_logprob(model, ctx + ch) - joint_logprob(model, ctx)  # log P(ch | ctx)
            assert got[q][c] == pytest.approx(want, abs=1e-4)


def test_mmlu_ll_accuracy_and_truthfulqa_on_a_real_model(model):
    rng = np.random.default_rng(1)
    contexts = [list(rng.integers(1, 128, size=12)) for _ in range(8)]
    letters = [[[int(t)] for t in (10, 11, 12, 13)]] * 8  # " A".." D" as single tokens
    lls = choice_logliks(hf_score_fn(model), contexts, letters)
    best = [int(np.argmax(x)) for x in lls]
    assert list(mm.ll_predictions(hf_score_fn(model), contexts, letters)) == best
    assert mm.ll_accuracy(hf_score_fn(model), contexts, letters, best) == 1.0
    assert mm.ll_accuracy(hf_score_fn(model), contexts, letters, [(b + 1) % 4 for b in best]) == 0.0
    # TruthfulQA on the same log-likelihoods: label the model's favourite true → MC1 = 1
    assert tq.scores(lls, [[int(i == b) for i in range(4)] for b in best], "mc1") == 1.0
    mc2 = tq.scores(lls, [[1, 1, 0, 0]] * 8, "mc2")
    want = np.mean([np.exp(x[:2]).sum() / np.exp(x).sum() for x in lls])
    assert mc2 == pytest.approx(want)


def test_engine_score_fn_matches_plain_transformers(model, tmp_path):
    hf = pytest.importorskip("asd.models.hf")
    model.save_pretrained(tmp_path)
    eng = hf.HFEngine(tmp_path, device="cpu")
    contexts, conts = [[1, 2, 3, 4], [5, 6]], [[7, 8], [9, 10, 11]]
    a = engine_score_fn(eng)(contexts, conts)
    b = hf_score_fn(model)(contexts, conts)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_encode_pair_with_a_real_tokenizer():
    from asd.testbed.tokenizer import load_tokenizer

    tok = load_tokenizer()
    ctx, cont = encode_pair(tok, "Q: 2+2?\nAnswer: ", "B")
    assert tok.decode(ctx + cont) == "Q: 2+2?\nAnswer: B"
    assert tok.decode(cont).startswith(" ") or tok.decode(cont) == " B"  # the trailing space moved over


LETTER_CASES = [
    ("B", "B"), (" B", "B"), ("B.", "B"), ("(C)", "C"), ("C) Mercury", "C"), ("D. Age", "D"), ("**A**", "A"),
    ("The answer is B.", "B"), ("The answer is (D)", "D"), ("Answer: C", "C"), ("answer: a", "A"),
    ("I think the correct option is C because...", "C"), ("The correct answer is: **B**", "B"),
    ("Mercury is closest, so the answer is B", "B"), ("A", "A"),
    ("", None), ("I am not sure.", None), ("Based on the question", None), ("E", None), ("All of them", None),
]


@pytest.mark.parametrize("text,letter", LETTER_CASES)
def test_extract_letter(text, letter):
    assert mm.extract_letter(text) == letter


def test_mmlu_generative_accuracy():
    assert mm.accuracy(["B", "The answer is C", "no idea"], [1, 2, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        mm.accuracy(["A"], [0, 1])


def test_truthfulqa_hand_computed():
    ll = np.log(np.array([0.5, 0.3, 0.2]))
    assert tq.mc1(ll, [1, 0, 0]) == 1.0 and tq.mc1(ll, [0, 1, 0]) == 0.0
    assert tq.mc2(ll, [1, 1, 0]) == pytest.approx(0.8)
    assert tq.mc2(np.array([-1000.0, -1001.0]), [0, 1]) == pytest.approx(1 / (1 + math.e))  # stable at tiny p
    with pytest.raises(ValueError, match="one label 1"):
        tq.mc1(ll, [1, 1, 0])
    with pytest.raises(ValueError, match="true and false"):
        tq.mc2(ll, [1, 1, 1])
    with pytest.raises(ValueError, match="kind"):
        tq.scores([ll], [[1, 0, 0]], "mc3")
