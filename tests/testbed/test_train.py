"""The training script on the CPU: deterministic data, correct loss masks, loadable output."""
import json

import numpy as np

from asd.config_loader import from_dict
from asd.testbed import tokenizer as tk
from asd.testbed.config import TrainingConfig
from asd.testbed.train import _batch, batch_order, build_data, train_stage

SMALL = {"s0": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                    intermediate_size=64, lr=3e-3)}


def _cfg(**kw):
    return from_dict(TrainingConfig, dict(stages=SMALL, steps=6, batch_size=8, warmup=2, device="cpu",
                                          log_every=2) | kw)


def test_data_is_deterministic_and_prefix_stable():
    cfg = _cfg()
    a = build_data(cfg, 4, workers=1, chunk=16)
    b = build_data(cfg, 6, workers=1, chunk=16)
    n = len(a[1]) - 1
    assert n == 32 and np.array_equal(a[1], b[1][:n + 1]) and np.array_equal(a[0], b[0][:a[1][-1]])
    assert [len(x) for x in batch_order(a[1], 8, 0)] == [8] * 4


def test_labels_cover_exactly_the_answer():
    cfg = _cfg()
    toks, offsets, plens = build_data(cfg, 1, workers=1)
    ids, labels, mask = _batch(toks, offsets, plens, np.arange(8))
    for r in range(8):
        n = offsets[r + 1] - offsets[r]
        assert mask[r].sum() == n
        lab = labels[r][labels[r] >= 0].tolist()
        assert lab[-1] == tk.EOS_ID and len(lab) == n - plens[r]
        assert tk.encode(tk.chat_prompt("x"))[-3:] == ids[r][plens[r] - 3:plens[r]].tolist()  # "assistant\n" end


def test_train_stage_writes_loadable_weights_and_log(tmp_path):
    from transformers import Qwen2ForCausalLM

    rec = train_stage(_cfg(), "s0", tmp_path, workers=1)
    assert rec["steps"] == 6 and rec["stopped_at_step"] is None
    assert rec["loss_curve"][0][1] > rec["loss_curve"][-1][1]
    m = Qwen2ForCausalLM.from_pretrained(tmp_path / "weights" / "s0", local_files_only=True)
    assert m.config.vocab_size == tk.VOCAB_SIZE and m.config.eos_token_id == tk.EOS_ID
    log = json.loads((tmp_path / "logs" / "s0.json").read_text())
    assert log["config"]["steps"] == 6 and "git_revision" in log
