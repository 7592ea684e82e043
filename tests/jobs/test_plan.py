"""JobConfig validation, the shard plan, the run fingerprint and the run-folder guard."""
from __future__ import annotations

import numpy as np
import pytest

from asd.config_loader import ConfigError, from_dict
from asd.run_config import load_config
from asd.jobs.plan import JobConfig, ShardPlan, fingerprint, gpus_per_task, prepare_output_dir, shard_ranges
from asd.models.config import HierarchyConfig

from .helpers import write_config


@pytest.mark.parametrize("n,k", [(10, 4), (7, 7), (100_000, 8), (5, 1)])
def test_shard_ranges_cover_ids_once(n, k):
    r = shard_ranges(n, k)
    ids = np.concatenate([np.arange(a, b) for a, b in r])
    assert np.array_equal(ids, np.arange(n))
    sizes = [b - a for a, b in r]
    assert max(sizes) - min(sizes) <= 1 and len(r) == k


def test_bad_jobs_config_errors_name_field_and_choices():
    with pytest.raises(ConfigError, match=r"executor.*'pbs'.*'slurm', 'local'"):
        from_dict(JobConfig, {"output_dir": "x", "executor": "pbs"}, source="run.yaml", path="jobs")
    for bad in (0, -3):
        with pytest.raises(ConfigError, match=r"run.yaml: jobs: shards must be >= 1"):
            from_dict(JobConfig, {"output_dir": "x", "shards": bad}, source="run.yaml", path="jobs")
    with pytest.raises(ConfigError, match="shards .* <= num_samples"):
        from_dict(JobConfig, {"output_dir": "x", "shards": 11, "num_samples": 10})
    with pytest.raises(ConfigError, match="module:function"):
        from_dict(JobConfig, {"output_dir": "x", "step": "asd.jobs.steps.synthetic"})
    with pytest.raises(ConfigError, match="unknown key.*'shard'.*valid keys"):
        from_dict(JobConfig, {"output_dir": "x", "shard": 3})


def test_plan_ids_and_bad_index(tmp_path):
    plan = ShardPlan(JobConfig(output_dir=str(tmp_path), num_samples=10, shards=4))
    assert plan.sample_ids(3).tolist() == [8, 9]
    assert plan.layout.shard(3).name == "shard-00003-of-00004.h5"
    with pytest.raises(ValueError, match="out of range 0..3"):
        plan.sample_ids(4)


def test_fingerprint_ignores_execution_settings_only(tmp_path):
    base = load_config(write_config(tmp_path / "a.yaml", tmp_path / "o"))
    other_exec = load_config(write_config(tmp_path / "b.yaml", tmp_path / "p", executor="slurm",
                                          array_parallelism=2, timeout_min=3, batch_size=5))
    other_seed = load_config(write_config(tmp_path / "c.yaml", tmp_path / "o", seed=8))
    other_shards = load_config(write_config(tmp_path / "d.yaml", tmp_path / "o", shards=5))
    assert fingerprint(base) == fingerprint(other_exec)
    assert fingerprint(base) != fingerprint(other_seed) != fingerprint(other_shards)


def test_gpus_per_task_from_the_hierarchy_layout():
    h = from_dict(HierarchyConfig, {"name": "q", "backend": "vllm", "stages": [
        {"name": n, "model": n, "tensor_parallel_size": tp} for n, tp in zip("abcd", (1, 1, 2, 4))]})
    job = JobConfig(output_dir="x")
    assert gpus_per_task(job, {"jobs": job, "hierarchy": h}) == 8      # one whole 8-GPU node per task
    assert gpus_per_task(job, {"jobs": job}) == 0
    assert gpus_per_task(JobConfig(output_dir="x", gpus_per_task=2), {"hierarchy": h}) == 2


def test_output_dir_of_another_run_is_refused_untouched(tmp_path):
    out = tmp_path / "run"
    a = write_config(tmp_path / "a.yaml", out)
    rec = prepare_output_dir(load_config(a), a)
    assert prepare_output_dir(load_config(a), a)["fingerprint"] == rec["fingerprint"]   # same run: resume
    before = (out / "run.json").read_bytes()
    b = write_config(tmp_path / "b.yaml", out, seed=99)
    with pytest.raises(ValueError, match="holds another run.*nothing was overwritten"):
        prepare_output_dir(load_config(b), b)
    assert (out / "run.json").read_bytes() == before


def test_output_dir_with_unrelated_files_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text("precious")
    a = write_config(tmp_path / "a.yaml", out)
    with pytest.raises(ValueError, match=r"not empty and has no run.json.*results.csv"):
        prepare_output_dir(load_config(a), a)
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]
