"""``asd generate-data`` end to end on the testbed: in-process, twice (same data), on the SLURM cluster; errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from slurm_cluster import require_cluster

from asd.cli import main
from asd.predictor_data.schema import fields, read_predictor_data

ROOT = Path(__file__).resolve().parents[2]
LATENCY = ("gen_latency_s", "verify_latency_s")  # wall-clock measurements: never equal between two runs


def _config(tmp: Path, name: str, **jobs) -> Path:
    cfg = yaml.safe_load((ROOT / "configs/predictor_data_small.yaml").read_text())
    cfg["predictor_data"].update(max_new_tokens=8, tasks=["gsm8k", "humaneval"], levels=[1, 5])
    cfg["jobs"].update(output_dir=str(tmp / name), num_samples=8, shards=2, batch_size=3, seed=11, **jobs)
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def same_data(a: Path, b: Path) -> None:
    """Every field of a equals b (NaN = NaN, vlen element by element), latencies aside (finite both)."""
    da, db = read_predictor_data(a), read_predictor_data(b)
    assert da.attrs["seed"] == db.attrs["seed"] and da.attrs["run_fingerprint"] == db.attrs["run_fingerprint"]
    assert set(da.data) == set(fields(4))
    for name, x in da.data.items():
        y = db.data[name]
        if name in LATENCY:
            assert np.isfinite(x).sum() == np.isfinite(y).sum() > 0, name
        elif name.startswith("tokens_"):
            assert all(np.array_equal(u, v) for u, v in zip(x, y)), name
        elif x.dtype == object:
            assert list(x) == list(y), name
        else:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gd")
    assert main(["generate-data", "--config", str(_config(tmp, "a")), "--executor", "in-process"]) == 0
    return tmp, tmp / "a" / "data.h5"


@pytest.mark.slow
def test_a_run_writes_the_training_set(reference, capsys):
    tmp, path = reference
    d = read_predictor_data(path)
    assert len(d) == 8 and d.data["sample_id"].tolist() == list(range(8))
    assert [(t, lv) for t, lv in zip(d.data["task"][:4], d.data["level"][:4])] == [
        ("gsm8k", 1), ("gsm8k", 5), ("humaneval", 1), ("humaneval", 5)]  # fmt: skip
    assert (d.data["agree_final"][:, 3] == 1).all() and set(np.unique(d.data["score"])) <= {0.0, 1.0}
    assert d.data["batch_size"].tolist() == [3, 3, 3, 1, 3, 3, 3, 1]
    upper = np.triu(np.ones((4, 4), bool), 1)
    assert (d.data["accepted_len"][:, upper] >= 0).all() and np.isfinite(d.data["verify_latency_s"][:, upper]).all()
    assert d.attrs["stage_names"] == ["testbed:s0", "testbed:s1", "testbed:s2", "testbed:s3"]
    assert d.attrs["feature_names"] == d.feature_names and d.attrs["K"] == 4 and d.attrs["seed"] == 11
    assert (tmp / "a" / "traces.h5").samefile(path)
    if shutil.which("h5ls"):
        out = subprocess.run(["h5ls", str(path)], capture_output=True, text=True, check=True).stdout
        assert "accept_frac" in out and "{8/Inf, 4, 4}" in out
    # a rerun finds every shard done: nothing recomputed, the same file
    assert main(["generate-data", "--config", str(tmp / "a.yaml"), "--executor", "in-process"]) == 0
    assert '"samples_written": 0' in capsys.readouterr().out


@pytest.mark.slow
def test_same_seed_twice_gives_the_same_data(reference):
    tmp, path = reference
    assert main(["generate-data", "--config", str(_config(tmp, "b")), "--executor", "in-process"]) == 0
    same_data(path, tmp / "b" / "data.h5")


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_array_gives_the_same_data(reference):
    require_cluster()
    tmp, path = reference
    assert main(["generate-data", "--config", str(_config(tmp, "s")), "--executor", "slurm"]) == 0
    same_data(path, tmp / "s" / "data.h5")
    assert list((tmp / "s" / "submitit").iterdir())  # it went through submitit


@pytest.mark.parametrize(
    "change, message",
    [
        ({"jobs": {"step": "asd.jobs.steps:synthetic"}}, "is not a predictor-data step"),
        ({"predictor_data": {"levels": [3, 4], "tasks": ["gsm8k"]}, "jobs": {"num_samples": 500}},
         "hold only 398 distinct predictor prompts"),
        ({"predictor_data": {"tasks": ["gsm9k"]}}, "unknown testbed task 'gsm9k'"),
        ({"predictor_data": {"fast": "yes"}}, "predictor_data.fast: expected bool"),
        ({"predictor_data": {"source": "benchmarks"}}, "needs jobs.step 'asd.predictor_data.steps:benchmarks'"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_before_anything_is_written(tmp_path, capsys, change, message):
    cfg = yaml.safe_load((ROOT / "configs/predictor_data_small.yaml").read_text())
    cfg["jobs"]["output_dir"] = str(tmp_path / "out")
    for sec, vals in change.items():
        cfg[sec].update(vals)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["generate-data", "--config", str(p), "--executor", "in-process"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_overrides_are_refused(tmp_path, capsys):
    cfg = ROOT / "configs/predictor_data_small.yaml"
    for args, message in [
        (["--set", "predictor_data.fast"], "expected SECTION.KEY=VALUE"),
        (["--set", "nosuch.x=1"], "has no section 'nosuch'"),
        (["--set", "predictor_data.nosuch=1"], "predictor_data.nosuch: unknown key 'nosuch'"),
        (["--num-samples", "0"], "--num-samples must be >= 1"),
        (["--hierarchy", str(ROOT / "configs/jobs_synthetic.yaml")], "no 'hierarchy' section to take"),
    ]:
        out = tmp_path / "o"
        assert main(["generate-data", "--config", str(cfg), "--output-dir", str(out), *args]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not out.exists()


@pytest.mark.slow
def test_the_process_thread_count_does_not_change_the_data(reference):
    """The models run on jobs.cpus_per_task torch threads whatever the process had set (CPU reductions depend on
    the count): a run after another count was set writes the reference's data, and the count is restored."""
    torch = pytest.importorskip("torch")
    tmp, path = reference
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    torch.set_num_threads(other)
    try:
        assert main(["generate-data", "--config", str(_config(tmp, "t")), "--executor", "in-process"]) == 0
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)
    same_data(path, tmp / "t" / "data.h5")
