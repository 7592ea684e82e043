"""The committed char-level tokenizer loads offline through AutoTokenizer and round-trips."""
import json

import pytest

from asd.testbed import tokenizer as tk


@pytest.fixture(scope="module")
def tok():
    return tk.load_tokenizer()


def test_loads_offline_with_chat_template(tok):
    assert tok.eos_token == tk.EOS and tok.eos_token_id == tk.EOS_ID
    assert tok.pad_token_id == tk.PAD_ID
    assert len(tok) == tk.VOCAB_SIZE
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == tk.chat_prompt("What is 2+3?")


@pytest.mark.parametrize("text", ["def solve(x):\n    return x + 1\n", "#### 42", "A. fox\nB. owl", "{}[]<>|~"])
def test_round_trip_and_fast_encode_agree(tok, text):
    full = tk.chat_prompt(text) + "ok" + tk.EOS
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert ids == tk.encode(full)
    assert tok.decode(ids) == full
    assert tok.decode(tk.encode(text), skip_special_tokens=True) == text


def test_committed_files_match_builder(tmp_path):
    tk.save_tokenizer(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((tk.TOKENIZER_DIR / name).read_text())


def test_unknown_characters_are_cleaned():
    assert tk.clean_text("a\tb\u00e9") == "a    b?"


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        tk.load_tokenizer(tmp_path)
