"""The testbed's shared tokenizer: one token per character, built with ``tokenizers``.

The vocabulary is fixed (printable ASCII, newline, and three Qwen-style special
tokens), so the tokenizer is *built*, not trained: ``build_tokenizer()`` is a pure
function of this file and ``save_tokenizer(dir)`` writes ``tokenizer.json`` +
``tokenizer_config.json`` (with a chat template) that ``AutoTokenizer.from_pretrained(dir)``
loads offline — the same loading path as a real checkpoint folder. The committed copy
lives in ``asd/testbed/tokenizer/``; ``load_tokenizer()`` loads it.

Special tokens (ids 0..2): ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos of
a chat turn, the token generation stops at). A character outside the vocabulary becomes the
unknown token (``<|endoftext|>``) in the HF tokenizer and ``?`` in the fast ``encode``; pass
untrusted text through ``clean_text`` first so that both agree.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"

PAD = "<|endoftext|>"
BOS_TURN = "<|im_start|>"
EOS = "<|im_end|>"
SPECIALS = [PAD, BOS_TURN, EOS]
# printable ASCII without \t\r\x0b\x0c, plus newline: 95 + 1 characters
CHARS = ["\n"] + [c for c in string.printable if c not in "\t\r\x0b\x0c\n"]
UNK_CHAR = "?"

# Qwen-style chat template (ChatML), no default system prompt: keeps prompts short.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def vocab() -> dict[str, int]:
    """token → id: the three specials first, then the characters."""
    toks = SPECIALS + CHARS
    return {t: i for i, t in enumerate(toks)}


def clean_text(text: str) -> str:
    """Replace characters outside the vocabulary by ``?`` (tabs become 4 spaces)."""
    allowed = set(CHARS)
    text = text.replace("\t", "    ").replace("\r", "")
    return "".join(c if c in allowed else UNK_CHAR for c in text)


def build_tokenizer():
    """The char-level ``tokenizers.Tokenizer`` (WordLevel over single characters, Fuse decoder)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=vocab(), unk_token=PAD))
    # every character is its own pre-token ("isolated"), newlines included
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return tok


def save_tokenizer(out_dir: str | Path) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` (chat template, eos/pad) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(out / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1024,
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": PAD,
        "padding_side": "left",
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "special": True,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
            }
            for i, t in enumerate(SPECIALS)
        },
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": EOS, "pad_token": PAD, "unk_token": PAD}, indent=2) + "\n"
    )
    return out


def load_tokenizer(path: str | Path | None = None):
    """``AutoTokenizer`` for the committed testbed tokenizer (or ``path``); offline, no Hub."""
    from transformers import AutoTokenizer

    p = Path(path) if path is not None else TOKENIZER_DIR
    if not (p / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{p}: no tokenizer.json (rebuild with `python -m asd.testbed.tokenizer {p}`)")
    return AutoTokenizer.from_pretrained(str(p), local_files_only=True)


def chat_prompt(user: str) -> str:
    """The chat-formatted prompt text for one user turn, generation prompt appended (== the template)."""
    return f"{BOS_TURN}user\n{user}{EOS}\n{BOS_TURN}assistant\n"


def encode(text: str) -> list[int]:
    """Fast pure-python encoding equal to the tokenizer's (specials recognised); for training data."""
    v = _VOCAB
    ids: list[int] = []
    i = 0
    n = len(text)
    while i < n:
        if text[i] == "<" and text.startswith("<|", i):
            for s in SPECIALS:
                if text.startswith(s, i):
                    ids.append(v[s])
                    i += len(s)
                    break
            else:
                ids.append(v["<"])
                i += 1
            continue
        ids.append(v.get(text[i], v[UNK_CHAR]))
        i += 1
    return ids


_VOCAB = vocab()
VOCAB_SIZE = len(_VOCAB)
PAD_ID, BOS_TURN_ID, EOS_ID = (_VOCAB[s] for s in SPECIALS)


if __name__ == "__main__":  # python -m asd.testbed.tokenizer [dir]
    import sys

    print(save_tokenizer(sys.argv[1] if len(sys.argv) > 1 else TOKENIZER_DIR))
