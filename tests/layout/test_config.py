"""asd.layout.config: the layout section loads strictly; ranks are packed or placed; shapes resolve."""
from __future__ import annotations

from pathlib import Path

import pytest

from asd.config_loader import ConfigError
from asd.layout.config import LayoutConfig, LayoutStage
from asd.models.shapes import QWEN25
from asd.run_config import load_section

ROOT = Path(__file__).resolve().parents[2]


def test_committed_layouts_load_and_place_their_stages():
    ranks = {
        "h200x8": [[0], [1], [2, 3], [4, 5, 6, 7]],
        "h200x4": [[3], [2], [0, 1], [0, 1, 2, 3]],
        "h200x2": [[0, 1]] * 4,
        "h200x1": [[0]] * 4,
    }
    for name, want in ranks.items():
        lay = load_section(ROOT / f"configs/layout_{name}.yaml", "layout")
        prof = load_section(ROOT / f"configs/layout_{name}.yaml", "cost_profiling")
        assert lay.ranks(len({r for b in want for r in b})) == want
        assert [s.resolved_shape()["hidden_size"] for s in lay.stages] == [QWEN25[k]["hidden_size"] for k in
                                                                           ("7b", "14b", "32b", "72b")]
        assert prof.decode_batch_sizes == [1, 8, 16, 32]
    one = load_section(ROOT / "configs/layout_h200x1.yaml", "layout")
    assert one.stages[-1].build_layers == 8 and all(s.build_layers is None for s in one.stages[:-1])


def test_too_few_ranks_and_bad_stages_are_refused(tmp_path):
    lay = LayoutConfig(name="x", stages=[LayoutStage(name="a", model="Qwen/Qwen2.5-7B"),
                                         LayoutStage(name="b", model="Qwen/Qwen2.5-72B", tensor_parallel=4)])
    assert lay.ranks(5) == [[0], [1, 2, 3, 4]]
    with pytest.raises(ValueError, match="ranks 1-4.*world of 4 rank.*--nproc_per_node >= 5"):
        lay.ranks(4)
    with pytest.raises(ValueError, match="no known shape"):
        LayoutStage(name="a", model="meta/llama")
    with pytest.raises(ValueError, match="shape lacks vocab_size"):
        LayoutStage(name="a", shape={"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "num_key_value_heads": 1})
    with pytest.raises(ValueError, match="build_layers 80 must be below its 80 layers"):
        LayoutStage(name="a", model="Qwen/Qwen2.5-72B", build_layers=80)
    with pytest.raises(ValueError, match="unique"):
        LayoutConfig(name="x", stages=[LayoutStage(name="a", model="Qwen/Qwen2.5-7B")] * 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("layout:\n  name: x\n  stages:\n    - {name: a, model: Qwen/Qwen2.5-7B, tp: 2}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: layout.stages\[0\]\.tp: unknown key 'tp'.*tensor_parallel"):
        load_section(bad, "layout")


def test_shape_overrides_are_ints_and_defaults_fill_the_rest():
    s = LayoutStage(name="t", shape={"hidden_size": 32.0, "intermediate_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128})
    shape = s.resolved_shape()
    assert shape["hidden_size"] == 32 and isinstance(shape["hidden_size"], int)
    assert shape["rms_norm_eps"] == 1e-6 and shape["rope_theta"] == 1e6
    deeper = LayoutStage(name="d", model="Qwen/Qwen2.5-7B", shape={"num_hidden_layers": 4})
    assert deeper.resolved_shape()["num_hidden_layers"] == 4 and deeper.resolved_shape()["hidden_size"] == 3584
