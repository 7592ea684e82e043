"""Engines (backends) behind one protocol; heavy engines are strings until used."""

from __future__ import annotations

# name → "module:attr"; importing asd.models imports neither transformers nor vLLM.
BACKENDS = {"hf": "asd.models.hf:HFEngine", "vllm": "asd.models.vllm:VLLMEngine"}


def get_backend(name: str):
    """The engine class for ``name``; ValueError with the valid choices otherwise."""
    from asd.registry import resolve

    return resolve(BACKENDS, name, "backend")
