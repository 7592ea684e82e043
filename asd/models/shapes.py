"""Architecture shapes of known checkpoints, for building random-weight stand-ins without the Hub.

Used by ``asd profile --random-weights``: cost depends on shapes, not on weight values. Numbers are the
published ``config.json`` values of the Qwen2.5 base/instruct checkpoints (both share shapes).
"""

from __future__ import annotations

_QWEN25_COMMON = {
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
}

# name → Qwen2Config keyword arguments
QWEN25: dict[str, dict] = {
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        **_QWEN25_COMMON,
    ),
    "14b": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=48,
        num_attention_heads=40,
        num_key_value_heads=8,
        **_QWEN25_COMMON,
    ),
    "32b": dict(
        hidden_size=5120,
        intermediate_size=27648,
        num_hidden_layers=64,
        num_attention_heads=40,
        num_key_value_heads=8,
        **_QWEN25_COMMON,
    ),
    "72b": dict(
        hidden_size=8192,
        intermediate_size=29568,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        **_QWEN25_COMMON,
    ),
}


def known_shape(model_id: str) -> dict | None:
    """Qwen2Config kwargs for ``Qwen/Qwen2.5-<size>[-Instruct]`` (case-insensitive), else None."""
    name = model_id.lower().rsplit("/", 1)[-1]
    if not name.startswith("qwen2.5-"):
        return None
    size = name[len("qwen2.5-") :].split("-")[0]
    return dict(QWEN25[size]) if size in QWEN25 else None


def param_count(shape: dict) -> int:
    """Parameters of a Qwen2 model with these kwargs (q/k/v biases included)."""
    h, i, n = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    hd = h // shape["num_attention_heads"]
    q, kv = shape["num_attention_heads"] * hd, shape["num_key_value_heads"] * hd
    layer = h * (q + 2 * kv) + (q + 2 * kv) + q * h + 3 * h * i + 2 * h
    emb = shape["vocab_size"] * h * (1 if shape.get("tie_word_embeddings") else 2)
    return n * layer + emb + h
