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


# ----------------------------------------------------------------------------- the same rules from Python

import dataclasses  # noqa: E402
import typing  # noqa: E402

import numpy as np  # noqa: E402

from asd.cascade import CascadeConfig  # noqa: E402
from asd.config_loader import check_fields, short_repr  # noqa: E402
from asd.core.dp import PolicyConfig  # noqa: E402
from asd.core.synthetic import StageLatency  # noqa: E402
from asd.layout.config import LayoutStage  # noqa: E402
from asd.models.config import HierarchyConfig, StageConfig  # noqa: E402
from asd.run_config import SECTIONS, section_class  # noqa: E402
from asd.testbed.config import ModelShape  # noqa: E402

REQUIRED = {  # the fields without a default, per class
    "HierarchyConfig": dict(name="h", stages=[StageConfig("a", "m"), StageConfig("b", "m")]),
    "StageConfig": dict(name="a", model="m"),
    "JobConfig": dict(output_dir="x"),
    "TrainingConfig": dict(stages={"s0": ModelShape(8, 1, 2, 1, 8, 1e-3)}),
    "ModelShape": dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=8, lr=1e-3),
    "LayoutConfig": dict(name="l", stages=[LayoutStage("a", "Qwen/Qwen2.5-7B"), LayoutStage("b", "Qwen/Qwen2.5-14B")]),
    "LayoutStage": dict(name="a", model="Qwen/Qwen2.5-7B"),
    "CellConfig": dict(id="c", dataset="testbed/gsm8k", task="gsm8k"),
    "PipelineConfig": dict(steps=[{"command": "evaluate"}]),
    "ChainStep": dict(command="evaluate"),
    "TrainPredictorConfig": dict(data="d.h5"),
    "StageLatency": dict(name="a", prefill_ms_per_token=1.0, prefill_ms=1.0, decode_ms_per_step=1.0,
                         decode_ms_per_item=1.0),
}


def _config_classes() -> list[type]:
    seen, stack = [], [section_class(s) for s in SECTIONS]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for tp in typing.get_type_hints(cls).values():
            stack += [a for a in (tp, *typing.get_args(tp), *[b for a in typing.get_args(tp) for b in typing.get_args(a)])
                      if dataclasses.is_dataclass(a)]
    return seen


def _wrong(tp):
    """A value of the wrong type for field type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    core = [a for a in args if a is not type(None)] if origin in (typing.Union, getattr(__import__("types"), "UnionType")) else [tp]
    t = core[0]
    if t is int:
        return 7.5
    if t is bool:
        return 1
    if t is float or t is str:
        return [1] if t is float else 3
    if typing.get_origin(t) is typing.Literal:
        return "bogus"
    return 5  # lists, dicts, dataclasses


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_config_dataclasses_check_types_on_construction(cls):
    obj = cls(**REQUIRED.get(cls.__name__, {}))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        bad = _wrong(hints[f.name])
        with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.{f.name}(\[0\])?: "):
            dataclasses.replace(obj, **{f.name: bad})


def test_cascade_config_from_python():
    with pytest.raises(ValueError, match=r"^CascadeConfig\.max_new_tokens: expected int, got 7\.5$"):
        CascadeConfig(max_new_tokens=7.5)
    with pytest.raises(ValueError, match=r"^CascadeConfig\.max_new_tokens: expected int, got '8'$"):
        CascadeConfig(max_new_tokens="8")
    with pytest.raises(ValueError, match=r"^CascadeConfig\.seed: 18446744073709551616 does not fit in 64 bits"):
        CascadeConfig(seed=2**64)
    with pytest.raises(ValueError, match="top_p must be in"):
        CascadeConfig(top_p=0.0)
    c = CascadeConfig(max_new_tokens=np.int64(8), temperature=1)  # numpy ints are ints; ints widen to float
    assert type(c.max_new_tokens) is int and type(c.temperature) is float


def test_python_conversions_match_the_loader():
    p = PolicyConfig(lam="inf", kappa=1)
    assert math.isinf(p.lam) and type(p.kappa) is float
    with pytest.raises(ConfigError, match=r"^PolicyConfig\.lam: expected a number, got nan$"):
        PolicyConfig(lam=float("nan"))
    h = HierarchyConfig(name="h", stages=[{"name": "a", "model": "m"}, {"name": "b", "model": "m", "dtype": "float32"}])
    assert all(isinstance(s, StageConfig) for s in h.stages) and h.stages[1].dtype == "float32"
    with pytest.raises(ConfigError, match=r"^HierarchyConfig\.stages\[1\]\.dtype: invalid value 'fp8'"):
        HierarchyConfig(name="h", stages=[{"name": "a", "model": "m"}, {"name": "b", "model": "m", "dtype": "fp8"}])
    with pytest.raises(ConfigError) as e:
        StageLatency(name=1, prefill_ms_per_token="a", prefill_ms=1, decode_ms_per_step=1, decode_ms_per_item=1)
    assert e.value.errors == ["StageLatency.name: expected str, got 1",
                              "StageLatency.prefill_ms_per_token: expected float, got 'a'"]  # every problem
    assert from_dict(PolicyConfig, to_dict(p)) == p


def test_check_fields_on_a_plain_dataclass():
    obj = Outer.__new__(Outer)
    obj.lam, obj.inner, obj.seeds, obj.tag = 1, {"width": 3}, (1, 2), None
    check_fields(obj)
    assert obj.inner == Inner(width=3) and obj.seeds == [1, 2] and type(obj.lam) is float


def test_short_repr_is_bounded():
    assert short_repr("x" * 10**6) == "'" + "x" * 76 + "..."
    assert short_repr(10**400) == "<an integer of 1329 bits>"
    assert short_repr(2**100) == str(2**100)
    nested: list = []
    for _ in range(1000):
        nested = [nested, nested]  # 2**1000 leaves if walked
    assert len(short_repr(nested)) <= 80

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert short_repr(Broken()).startswith("<Broken")


def test_unknown_keys_and_wrong_types_are_all_reported(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lam: x\ninner:\n  widht: 3\n  width: y\nseeds: [1, two, 3.5]\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(Outer, p)
    assert e.value.errors == [
        f"{p}:1: lam: expected float, got 'x'",
        f"{p}:3: inner.widht: unknown key 'widht' for Inner; valid keys: name, width",
        f"{p}:4: inner.width: expected int, got 'y'",
        f"{p}:5: seeds[1]: expected int, got 'two'",
        f"{p}:5: seeds[2]: expected int, got 3.5",
    ]
