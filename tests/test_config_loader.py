"""Strict YAML → dataclass loading: unknown keys, wrong types and missing fields name the file and field."""
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asd.config_loader import ConfigError, from_dict, load_yaml, to_dict
from asd.run_config import load_config, load_section

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Inner:
    width: int = 4
    name: str = "x"


@dataclass
class Outer:
    lam: float = 1.0
    inner: Inner = field(default_factory=Inner)
    seeds: list[int] = field(default_factory=list)
    tag: str | None = None


def test_roundtrip_and_widening():
    cfg = from_dict(Outer, {"lam": 2, "inner": {"width": 8}, "seeds": [1, 2], "tag": None})
    assert cfg.lam == 2.0 and isinstance(cfg.lam, float)
    assert cfg.inner.width == 8 and cfg.seeds == [1, 2]
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_inf_accepted():
    assert math.isinf(from_dict(Outer, {"lam": "inf"}).lam)


def test_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lam: 1\ninner:\n  widht: 3\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(Outer, p)
    msg = str(e.value)
    assert "widht" in msg and "width" in msg and "name" in msg and str(p) in msg and "inner" in msg


def test_wrong_type_names_field_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seeds: [1, two]\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(Outer, p)
    assert "seeds[1]" in str(e.value) and str(p) in str(e.value)


def test_bool_is_not_int():
    with pytest.raises(ConfigError, match="inner.width"):
        from_dict(Outer, {"inner": {"width": True}})


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: invalid YAML"):
        load_yaml(Outer, p)


def test_unknown_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("evaluatoin:\n  seeds: [1]\n")
    with pytest.raises(ConfigError, match="unknown config section .evaluatoin.; valid: cascade"):
        load_config(p)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg, f"{path} has no sections"


def test_reference_hierarchy():
    h = load_section(ROOT / "configs/qwen2.5_models.yaml", "hierarchy")
    assert [s.tensor_parallel_size for s in h.stages] == [1, 1, 2, 4]
    assert all(s.dtype == "bfloat16" for s in h.stages)
    assert h.total_gpus() == h.gpus_per_node == 8
    assert h.stage_index("32b") == 2
    with pytest.raises(ValueError, match="valid"):
        h.stage_index("70b")


def test_evaluation_validation(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("evaluation:\n  lambdas: [-1]\n")
    with pytest.raises(ConfigError, match="lambdas"):
        load_config(p)
