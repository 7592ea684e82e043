"""The pre-run validation pass: models resolve, stage indices, bounds, rules across sections."""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from asd.cascade import CascadeConfig
from asd.config_check import BOUNDS, LENGTHS, MAX_SYNTHETIC_CELLS, _pattern, model_problem, validate
from asd.config_loader import ConfigError
from asd.core.dp import PolicyConfig
from asd.evaluation.config import EvaluationConfig
from asd.core.synthetic import SyntheticConfig
from asd.jobs.plan import JobConfig, prepare_output_dir
from asd.models.config import HierarchyConfig, StageConfig
from asd.run_config import SECTIONS, load_config, section_class

ROOT = Path(__file__).resolve().parent.parent
TOK = str(ROOT / "asd/testbed/tokenizer")


def _hier(*models: str, backend: str = "hf", ctx: int = 512, gpus: int = 1, tp: int = 1) -> HierarchyConfig:
    return HierarchyConfig(name="h", backend=backend, gpus_per_node=gpus, tokenizer=TOK, stages=[
        StageConfig(name=f"s{i}", model=m, max_model_len=ctx, tensor_parallel_size=tp) for i, m in enumerate(models)])


TESTBED = ("testbed:s0", "testbed:s1", "testbed:s3")


def _problems(sections, **kw) -> list[str]:
    try:
        validate(sections, **kw)
    except ConfigError as e:
        return e.errors
    return []


def _type_paths(cls, prefix: str) -> set[str]:
    """Every path a field of ``cls`` can take: ``a.b``, ``a.list[]``, ``a.dict.*``."""
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        stack = [(hints[f.name], f"{prefix}.{f.name}")]
        while stack:
            tp, p = stack.pop()
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            out.add(p)
            if dataclasses.is_dataclass(tp):
                out |= _type_paths(tp, p)
            elif origin in (list, tuple):
                stack.append((args[0], p + "[]"))
            elif origin is dict:
                stack.append((args[1], p + ".*"))
            elif origin is typing.Union or type(tp).__name__ == "UnionType":
                stack += [(a, p) for a in args if a is not type(None)]
    return out


def test_every_bound_names_a_real_field():
    """A typo in a bound's path would silently check nothing."""
    paths = set().union(*(_type_paths(section_class(s), s) for s in SECTIONS))
    concrete = {p.replace("[]", "[0]").replace(".*", ".k") for p in paths}
    for table in (BOUNDS, LENGTHS):
        for pattern in table:
            assert any(_pattern(pattern).fullmatch(p) for p in concrete), pattern


def test_shipped_configs_pass():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        validate(load_config(path, validate=False), source=path)


@pytest.mark.parametrize("model,why", [
    ("testbed:s2", None),
    ("testbed:s9", "unknown testbed stage 's9'; valid: testbed:s0, testbed:s1, testbed:s2, testbed:s3"),
    ("testbed:", "unknown testbed stage ''; valid: testbed:s0, testbed:s1, testbed:s2, testbed:s3"),
    ("Qwen/Qwen2.5-7B-Instruct", None),
    ("Qwen/Qwen2.5-0.5B", None),
    ("Qwen/Qwen2.5-Coder-7B-Instruct", None),  # a variant: the form of a hub id is all we check
    ("Qwen/Qwen2.5-8B-Instruct", "Qwen2.5 has no 8B model; published sizes: 0.5B, 1.5B, 3B, 7B, 14B, 32B, 72B"),
    ("gpt2", None),
    ("/no/such/ckpt", "no such model folder '/no/such/ckpt'"),
    ("./ckpt", "no such model folder './ckpt'"),
    ("runs/a/ckpt", "no such model folder 'runs/a/ckpt'"),
    ("org/name with space", "'org/name with space' is neither testbed:<stage>, an existing model folder nor a "
                            "Hugging Face id (owner/name)"),
    ("a--b/c", "'a--b/c' is neither testbed:<stage>, an existing model folder nor a Hugging Face id (owner/name)"),
])
def test_model_ids(model, why):
    assert model_problem(model) == why


def test_local_model_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    assert model_problem(str(tmp_path / "empty")) == f"folder '{tmp_path / 'empty'}' holds no config.json"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"vocab_size": 10}))
    assert model_problem(str(tmp_path / "m")) is None
    (tmp_path / "f").write_text("x")
    assert "is a file" in model_problem(str(tmp_path / "f"))


def test_stage_config_json_without_vocab_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    h = HierarchyConfig(name="h", stages=[StageConfig(name="a", model=str(tmp_path / "a")),
                                          StageConfig(name="b", model="testbed:s0")])
    assert _problems({"hierarchy": h}) == [
        "hierarchy.stages: a stage's config.json or tokenizer.json is unreadable (KeyError: 'vocab_size')"]


def test_stage_vocabularies_must_agree(tmp_path):
    for name, v in (("a", 10), ("b", 12)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"vocab_size": v}))
    h = HierarchyConfig(name="h", stages=[StageConfig(name="a", model=str(tmp_path / "a")),
                                          StageConfig(name="b", model=str(tmp_path / "b"))])
    assert _problems({"hierarchy": h}) == ["hierarchy.stages: stages have different vocabulary sizes "
                                           "{'a': 10, 'b': 12}: a cascade needs one shared tokenizer"]


def test_stage_indices_against_k():
    h = _hier(*TESTBED)
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="fixed_depth", stage=2)}) == []
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="single", stage=-1)}) == []
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="single", stage=-2)}) == [
        "policy.stage: stage -2 out of range for 3 stages; valid: 0..2 or -1 (the last)"]
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="random", histogram=[1, 1])}) == [
        "policy.histogram: 2 entries; the hierarchy has K=3 stages: give K weights"]
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="dp", start=2)}) == []
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="dp", start=3)}) == [
        "policy.start: start 3 out of range for 3 stages; valid: 0..2"]
    assert _problems({"hierarchy": h, "evaluation": EvaluationConfig(starts=[0, 2])}) == [
        "evaluation.starts: starts [2] out of range for 3 stages; valid: 0..1"]
    # K of the synthetic job when there is no hierarchy (its default has 4 stages)
    assert _problems({"synthetic": SyntheticConfig(batch=10), "policy": PolicyConfig(name="single", stage=4)}) == [
        "policy.stage: stage 4 out of range for 4 stages; valid: 0..3 or -1 (the last)"]
    ok = {"hierarchy": h, "cascade": CascadeConfig(gamma=1, regen_drafter=1)}
    assert _problems(ok) == []
    assert _problems({"hierarchy": h, "cascade": CascadeConfig(gamma=1, regen_drafter=2)}) == [
        "cascade.regen_drafter: regen_drafter 2 out of range; valid: 0..1 (γ > 0)"]
    assert _problems({"hierarchy": h, "cascade": CascadeConfig(gamma=0, regen_drafter=5)}) == []  # unused at γ = 0


def test_cross_field_rules():
    h = _hier(*TESTBED)
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="speculative")}) == [
        "policy.name: policy 'speculative' needs cascade.gamma >= 1 (the drafter's lookahead)"]
    assert _problems({"hierarchy": h, "policy": PolicyConfig(name="speculative"), "cascade": CascadeConfig(gamma=2)}) == []
    v = _hier(*TESTBED, backend="vllm", gpus=4)
    assert _problems({"hierarchy": v, "cascade": CascadeConfig(gamma=1, temperature=0.5)}) == [
        "hierarchy.backend: cascade.gamma > 0 and cascade.temperature > 0 need backend 'hf' (backend 'vllm' cannot)"]
    big = _hier(*TESTBED, backend="vllm", gpus=4, tp=2)
    assert _problems({"hierarchy": big}) == [
        "hierarchy.stages: the stages need 6 GPUs (sum of tensor_parallel_size) on one node; gpus_per_node is 4"]
    assert _problems({"hierarchy": h, "cascade": CascadeConfig(max_new_tokens=512)}) == [
        "cascade.max_new_tokens: max_new_tokens 512 leaves no room for a prompt: the smallest max_model_len of "
        "the stages is 512"]
    assert _problems({"hierarchy": dataclasses.replace(h, device="gpu:0")}) == [
        "hierarchy.device: invalid device 'gpu:0'; valid: auto, cpu, cuda, cuda:N"]


def test_jobs_rules(tmp_path):
    job = JobConfig(output_dir=str(tmp_path / "r"), executor="slurm", timeout_min=2, slurm_signal_delay_s=120,
                    step_options={"delay_s": float("inf")})
    assert _problems({"jobs": job}) == [
        "jobs.slurm_signal_delay_s: 120 s: the checkpoint signal must come before the time limit "
        "(timeout_min 2 = 120 s)",
        "jobs.step_options.delay_s: inf is not a finite number"]
    assert _problems({"jobs": dataclasses.replace(job, executor="local", step_options={})}) == []
    (tmp_path / "file").write_text("x")
    assert _problems({"jobs": JobConfig(output_dir=str(tmp_path / "file"))}) == [
        f"jobs.output_dir: '{tmp_path / 'file'}' exists and is not a folder"]
    assert _problems({"jobs": JobConfig(output_dir="r", step="asd.jobs:steps")}) == [
        "jobs.step: step 'asd.jobs:steps' is not a function"]
    assert _problems({"jobs": JobConfig(output_dir="r", evaluate_step="no_such_module_x:f")}) == [
        "jobs.evaluate_step: step 'no_such_module_x:f' does not resolve (No module named 'no_such_module_x')"]


def test_bounds():
    assert _problems({"synthetic": SyntheticConfig(batch=10_000_000, draws=8)}) == [
        f"synthetic.batch: batch × draws × stages = 320,000,000 predictor outputs; at most {MAX_SYNTHETIC_CELLS:,} "
        "(memory: 8 bytes each, several arrays)"]
    assert _problems({"synthetic": SyntheticConfig(batch=10_000_001)}) == [
        "synthetic.batch: 10000001 is above the limit 10,000,000 (docs/config.md)",
        "synthetic.batch: batch × draws × stages = 320,000,032 predictor outputs; at most 50,000,000 "
        "(memory: 8 bytes each, several arrays)"]
    assert _problems({"synthetic": SyntheticConfig(lambdas=[1.0] * 1001)}) == [
        "synthetic.lambdas: 1,001 entries; allowed: 1 to 1,000 (docs/config.md)"]
    h = _hier(*TESTBED, ctx=2_000_000)
    assert _problems({"hierarchy": h}) == [
        f"hierarchy.stages[{i}].max_model_len: 2000000 is above the limit 1,048,576 (docs/config.md)" for i in range(3)]


def test_required_sections_and_lines_read_from_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("policy:\n  name: single\n  stage: 7\nsynthetic:\n  batch: 10\n")
    sections = load_config(p, validate=False)
    with pytest.raises(ConfigError) as e:
        validate(sections, source=p, require={"jobs": "the run folder"})
    assert e.value.errors == [f"{p}: missing section 'jobs' (the run folder)",
                              f"{p}:3: policy.stage: stage 7 out of range for 4 stages; valid: 0..3 or -1 (the last)"]


def test_prepare_output_dir_validates_before_writing(tmp_path):
    """The pre-run hook: sections built in Python meet the same checks; nothing is created."""
    out = tmp_path / "run"
    bad = {"jobs": JobConfig(output_dir=str(out), num_samples=10, shards=2), "hierarchy": _hier("testbed:s0", "x y")}
    with pytest.raises(ConfigError, match=re.escape("hierarchy.stages[1].model: 'x y' is neither")):
        prepare_output_dir(bad, tmp_path / "python.yaml")
    with pytest.raises(ConfigError, match="missing section 'jobs'"):
        prepare_output_dir({"policy": PolicyConfig()}, tmp_path / "python.yaml")
    assert sorted(tmp_path.iterdir()) == []
