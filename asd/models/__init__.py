"""Engines (backends) behind one protocol; heavy engines are strings until used."""
from __future__ import annotations

import importlib

# name → "module:attr"; importing asd.models imports neither transformers nor vLLM.
BACKENDS = {"hf": "asd.models.hf:HFEngine", "vllm": "asd.models.vllm:VLLMEngine"}


def get_backend(name: str):
    """The engine class for ``name``; ValueError with the valid choices otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid: {sorted(BACKENDS)}")
    mod, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), attr)
