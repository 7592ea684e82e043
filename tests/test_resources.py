"""asd.resources (CPU, memory, GPU accounting), asd.environment (the reproduction record), asd.schema_check."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from asd.environment import config_record, find_seeds, git_state
from asd.resources import GPUs, ResourceSampler, proc_cpu_times, proc_memory, sum_resources, visible_indices
from asd.schema_check import load_schema, validate


def test_sampler_counts_cpu_time_and_peak_memory():
    s = ResourceSampler(interval_s=0.01, gpu=True).start()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # 0.3 s of CPU whatever the machine's load
        np.sqrt(np.arange(10_000.0))
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    block[::512] = 2.0
    r = s.stop()
    assert r["cpu"]["user_s"] + r["cpu"]["system_s"] >= 0.29
    assert r["memory"]["peak_rss_bytes"] >= 200 * 2**20
    assert r["sampler"]["samples"] >= 2 and r["complete"] is True
    assert 0 <= r["sampler"]["overhead_s"] <= r["cpu"]["user_s"] + r["cpu"]["system_s"]
    del block


def test_proc_readers_agree_with_the_kernel():
    cpu = proc_cpu_times()
    assert set(cpu) == {"user_s", "system_s", "children_user_s", "children_system_s"}
    mem = proc_memory()
    assert mem["peak_rss_bytes"] >= mem["rss_bytes"] > 10 * 2**20


def test_gpu_part_without_nvml_is_a_reason_not_a_number():
    g = GPUs()
    if g.available:
        pytest.skip("this machine has NVML and GPUs; the energy path is checked by scripts/gpu_tracking.sh")
    assert g.reason and ("NVML" in g.reason or "nvidia-ml-py" in g.reason)
    s = ResourceSampler(interval_s=0.05).start()
    r = s.stop()["gpu"]
    assert r["available"] is False and r["devices"] == []
    assert r["energy_j"] in (None, 0.0) and (r["energy_j"] == 0.0) == g.no_gpu


def test_cuda_visible_devices_mapping():
    uuids = [f"GPU-{c}{c}{c}-{i}" for i, c in enumerate("abcdefgh")]
    assert visible_indices(uuids, None) == list(range(8))
    assert visible_indices(uuids, "2,3") == [2, 3]
    assert visible_indices(uuids, "") == []
    assert visible_indices(uuids, "GPU-ccc,GPU-aaa-0") == [2, 0]
    assert visible_indices(uuids, "1,9,2") == [1]  # CUDA stops at the first invalid entry


def _part(wall, cpu, peak, gpu_h, energy):
    return {
        "wall_s": wall, "started_unix": 100.0, "complete": True,
        "cpu": {"user_s": cpu, "system_s": 0.0, "children_user_s": 0.0, "children_system_s": 0.0, "total_s": cpu},
        "memory": {"peak_rss_bytes": peak, "mean_rss_bytes": peak // 2, "children_peak_rss_bytes": 0},
        "gpu": {"available": True, "reason": None, "count": 1, "gpu_hours": gpu_h, "busy_gpu_hours": gpu_h / 2,
                "energy_j": energy, "energy_note": "x" if energy is None else None, "devices": []},
        "sampler": {"interval_s": 1.0, "samples": 3, "overhead_s": 0.01, "overhead_fraction": 0.001},
    }


def test_sums_over_array_tasks():
    t = sum_resources([_part(10.0, 8.0, 100, 0.5, 1000.0), _part(30.0, 20.0, 300, 1.5, 3000.0)])
    assert t["tasks"] == 2 and t["wall_s"] == 40.0 and t["cpu"]["total_s"] == 28.0
    assert t["gpu"]["gpu_hours"] == 2.0 and t["gpu"]["energy_j"] == 4000.0
    assert t["memory"]["peak_rss_bytes"] == 300 and t["span_s"] == 30.0
    partial = sum_resources([_part(10.0, 8.0, 100, 0.5, 1000.0), _part(30.0, 20.0, 300, 1.5, None)])
    assert partial["gpu"]["energy_j"] is None and "1 of 2 task(s) have no energy reading" in partial["gpu"]["energy_note"]
    with pytest.raises(ValueError, match="no records"):
        sum_resources([])


def test_git_state_records_the_uncommitted_diff(tmp_path):
    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("")
    st = git_state(tmp_path)
    assert st["dirty"] and st["revision"].endswith("-dirty") and len(st["revision"]) == 40 + 6
    assert "-x = 1\n+x = 2" in st["diff"] and st["untracked"] == ["new.py"] and not st["diff_truncated"]


def test_config_record_and_seeds(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a:\n  seed: 1\n  inner: {data_seed: 2, seed_list: [3]}\nb: [{seed: 4}]\n")
    rec = config_record(p)
    assert rec["seeds"] == {"a.seed": 1, "a.inner.data_seed": 2, "b[0].seed": 4}
    assert find_seeds({"x": {"seed": True}}) == {}
    assert rec["text"] == p.read_text() and len(rec["sha256"]) == 64


def test_config_record_does_not_expand_an_alias_bomb(tmp_path):
    """A config whose aliases expand past the strict reader's limit: no seeds are collected (the command refuses
    the file itself), instead of one per expanded path (a plain YAML load walks 9**6 copies of the seed here)."""
    text = "a: &a [{seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}, {seed: 1}]\n"
    prev = "a"
    for n in "bcdef":
        text += f"{n}: &{n} [{', '.join(['*' + prev] * 9)}]\n"
        prev = n
    p = tmp_path / "bomb.yaml"
    p.write_text(text)
    rec = config_record(p)
    assert rec["seeds"] == {} and rec["text"] == text
    small = tmp_path / "shared.yaml"  # aliases within the limit are still read: one seed per path
    small.write_text("a: &a {seed: 3}\nb: [*a, *a]\n")
    assert config_record(small)["seeds"] == {"a.seed": 3, "b[0].seed": 3, "b[1].seed": 3}


def test_schema_checker_catches_what_it_claims():
    s = {
        "type": "object", "required": ["a", "b"], "additionalProperties": False,
        "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"$ref": "#/$defs/b"},
                       "c": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"enum": ["x", "y"]}}]}},
        "$defs": {"b": {"type": ["string", "null"]}},
    }
    assert validate({"a": 1, "b": None, "c": ["x"]}, s) == []
    errs = validate({"a": -1, "b": 3, "c": ["z"], "d": 0}, s)
    assert any("$.a: -1 < minimum 0" in e for e in errs)
    assert any("$.b: expected string or null" in e for e in errs)
    assert any("$.c: matches none of anyOf" in e for e in errs)
    assert any("unexpected key 'd'" in e for e in errs)
    assert validate({"a": True, "b": ""}, s)[0].startswith("$.a: expected integer")  # bool is not an integer
    assert "missing required key 'b'" in validate({"a": 1}, s)[0]
    with pytest.raises(ValueError, match="unsupported keyword"):
        validate(1, {"pattern": "x"})
    with pytest.raises(ValueError, match="unknown schema 'nope'; valid: tracking"):
        load_schema("nope")


def test_shipped_schema_is_within_the_checked_subset():
    from asd.schema_check import check_keywords

    check_keywords(load_schema("tracking"))  # raises on any keyword the checker does not implement
    with pytest.raises(ValueError, match="#/properties/a/items"):
        check_keywords({"properties": {"a": {"items": {"format": "date"}}}})
    assert (Path(__file__).resolve().parent.parent / "asd/schemas/tracking.schema.json").is_file()
