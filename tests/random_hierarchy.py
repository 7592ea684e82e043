"""A two-stage hierarchy of tiny random Qwen2 models with the testbed tokenizer, as a run config for CLI tests.

(tests/ is on sys.path through tests/conftest.py, so test modules import this as ``random_hierarchy``.)
"""

from __future__ import annotations

import shutil
from pathlib import Path


def two_stage_config(tmp_path: Path, extra_yaml: str = "") -> Path:
    """``tmp_path/c.yaml``: section ``hierarchy`` (stages a, b: random weights, float32, CPU) then ``extra_yaml``."""
    from asd.models.random_init import random_family
    from asd.testbed.tokenizer import TOKENIZER_DIR

    dirs = random_family(tmp_path / "fam", stages=2, seed=5, noise=0.02, hidden_size=16, num_layers=1, num_heads=2,
                         num_kv_heads=1, intermediate_size=32, init_std=0.3, max_position_embeddings=512)
    tok = tmp_path / "tok"
    shutil.copytree(TOKENIZER_DIR, tok)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
hierarchy:
  name: rnd
  device: cpu
  tokenizer: {tok}
  stages:
    - {{name: a, model: {dirs[0]}, dtype: float32}}
    - {{name: b, model: {dirs[1]}, dtype: float32}}
""" + extra_yaml)
    return cfg
