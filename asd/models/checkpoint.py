"""Safetensors checkpoints read without loading a tensor: headers, shard index, parameter counts.

A safetensors file is ``<u64 little-endian N><N bytes of JSON header><data>``; the header maps each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end)}`` (offsets into the data) and may hold
``__metadata__``. A sharded checkpoint adds ``model.safetensors.index.json``:
``{"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}``. Reading headers only is
what lets ``asd models verify`` check a 145 GB checkpoint in seconds and find a truncated shard by its size.

``qwen2_tensor_shapes`` lists the tensors of a Qwen2 model (as transformers names them);
``write_empty_checkpoint`` writes a checkpoint of any such shape whose data is all zeros and *sparse* on disk
(a full Qwen2.5-72B-shaped one occupies a few kilobytes): real headers, index and sizes for testing the
tooling (verify, plan) without the weights.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
TORCH_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
MAX_HEADER = 100_000_000  # the format's own limit on the header size


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent (message names the file)."""


def read_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size.

    Returns ``{"tensors": {name: {"dtype", "shape", "data_offsets"}}, "metadata": {...}, "header_bytes": N,
    "data_bytes": end of the last tensor, "file_bytes": size on disk}``; CheckpointError if the file is
    shorter than its header says (truncated), longer (trailing bytes), or the header is not valid.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{p}: truncated ({size} bytes; not even the 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{p}: truncated or not safetensors (header of {n} bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{p}: header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{p}: header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    end = 0
    for name, t in header.items():
        try:
            a, b = t["data_offsets"]
            need = math.prod(t["shape"]) * DTYPE_BYTES[t["dtype"]]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{p}: tensor {name!r} has a malformed header entry ({e!r})") from e
        if b - a != need or a < 0:
            raise CheckpointError(f"{p}: tensor {name!r} spans {b - a} bytes, its shape and dtype need {need}")
        end = max(end, b)
    expected = 8 + n + end
    if size < expected:
        raise CheckpointError(f"{p}: truncated: {size:,} bytes on disk, its header describes {expected:,}")
    if size > expected:
        raise CheckpointError(f"{p}: {size - expected:,} trailing bytes after the last tensor (corrupt)")
    return {"tensors": header, "metadata": meta, "header_bytes": n, "data_bytes": end, "file_bytes": size}


def numel(t: dict) -> int:
    return math.prod(t["shape"])


def weight_files(folder: str | Path) -> tuple[dict[str, str] | None, list[str]]:
    """``(weight_map or None, shard file names)`` of a checkpoint folder: from the index if there is one,
    else the single ``model.safetensors``; CheckpointError if there are no safetensors weights."""
    folder = Path(folder)
    idx = folder / INDEX_FILE
    if idx.is_file():
        try:
            wm = json.loads(idx.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{idx}: not a safetensors index ({e!r})") from e
        return wm, sorted(set(wm.values()))
    if (folder / SINGLE_FILE).is_file():
        return None, [SINGLE_FILE]
    raise CheckpointError(f"{folder}: no safetensors weights ({INDEX_FILE} or {SINGLE_FILE})")


def qwen2_tensor_shapes(cfg: dict) -> dict[str, list[int]]:
    """Tensor name → shape of a Qwen2ForCausalLM with config ``cfg`` (config.json keys), as saved by
    transformers (``lm_head.weight`` only without tied embeddings). Sum of numel == ``shapes.param_count``."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    q, k = heads * hd, kv * hd
    out: dict[str, list[int]] = {"model.embed_tokens.weight": [cfg["vocab_size"], h]}
    for layer in range(n):
        p = f"model.layers.{layer}."
        out.update(
            {
                p + "input_layernorm.weight": [h],
                p + "self_attn.q_proj.weight": [q, h],
                p + "self_attn.q_proj.bias": [q],
                p + "self_attn.k_proj.weight": [k, h],
                p + "self_attn.k_proj.bias": [k],
                p + "self_attn.v_proj.weight": [k, h],
                p + "self_attn.v_proj.bias": [k],
                p + "self_attn.o_proj.weight": [h, q],
                p + "post_attention_layernorm.weight": [h],
                p + "mlp.gate_proj.weight": [i, h],
                p + "mlp.up_proj.weight": [i, h],
                p + "mlp.down_proj.weight": [h, i],
            }
        )
    out["model.norm.weight"] = [h]
    if not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = [cfg["vocab_size"], h]
    return out


def write_safetensors(path: str | Path, tensors: dict[str, list[int]], dtype: str = "BF16") -> int:
    """A safetensors file of zero tensors with these shapes; the data is a hole (sparse), not written.
    Returns the file size in bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape in tensors.items():
        nb = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + off)
    return 8 + len(raw) + off


def write_empty_checkpoint(folder: str | Path, cfg: dict, shards: int = 1, dtype: str = "bfloat16") -> Path:
    """``config.json`` + safetensors shard(s) (+ index when ``shards > 1``) of a Qwen2 model shaped by ``cfg``,
    all weights zero and sparse on disk. Layers are split evenly over the shards, as transformers does."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    st = TORCH_DTYPES[dtype]
    shapes = qwen2_tensor_shapes(cfg)
    names = list(shapes)
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        part = {n: shapes[n] for n in names[s * per : (s + 1) * per]}
        fname = SINGLE_FILE if shards == 1 else f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / fname, part, st)
        total += sum(math.prod(v) for v in part.values()) * DTYPE_BYTES[st]
        weight_map.update(dict.fromkeys(part, fname))
    if shards > 1:
        (folder / INDEX_FILE).write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
        )
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": dtype, **cfg}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
