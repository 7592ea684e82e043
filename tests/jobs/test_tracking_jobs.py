"""Tracking an array: one record per task attempt in the run folder, summed by the merge job into the
array's record and into the merged trace file's ``resources`` attribute (local executor and real SLURM)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import require_cluster

h5py = pytest.importorskip("h5py", reason="h5py is not installed (requirements/base.txt)")

from asd.schema_check import load_schema, validate

from .helpers import write_config

REPO = Path(__file__).resolve().parents[2]


def _run(args, logs: Path, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ASD_LOG_DIR": str(logs)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def _record(path: Path) -> dict:
    rec = json.loads(path.read_text())
    assert validate(rec, load_schema("tracking")) == [], path
    return rec


def _check_array(run: Path, logs: Path, tasks: int, attempts: int) -> dict:
    rec = _record(logs / f"array-{run.name}-generate_data.json")
    arr = rec["array"]
    assert rec["kind"] == "array" and rec["status"] == "ok"
    assert arr["tasks"] == tasks and arr["attempts"] == attempts and arr["unreadable"] == []
    walls = [r["wall_s"] for r in arr["records"]]
    total = arr["total"]
    assert total["tasks"] == attempts + 1  # every attempt and the merge job itself
    assert abs(total["wall_s"] - (sum(walls) + rec["resources"]["wall_s"])) < 0.01
    assert total["cpu"]["total_s"] >= sum(r["cpu_s"] for r in arr["records"]) - 0.01
    assert total["memory"]["peak_rss_bytes"] == max(
        [r["peak_rss_bytes"] for r in arr["records"]] + [rec["resources"]["memory"]["peak_rss_bytes"]]
    )
    with h5py.File(run / "traces.h5", "r") as f:  # the run attribute: the attempts' sum (before the merge ended)
        res = json.loads(f.attrs["resources"])
    assert res["tasks"] == attempts and abs(res["wall_s"] - sum(walls)) < 0.01
    md = (logs / f"array-{run.name}-generate_comprehensive.md").read_text()
    assert f"Array: {tasks} task(s), {attempts} attempt record(s)" in md
    return rec


def test_local_array_is_summed_into_one_record(tmp_path):
    logs = tmp_path / "logs"
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "run", shards=3, executor="local")
    r = _run(["-m", "asd", "submit", "--config", str(cfg)], logs)
    assert r.returncode == 0, r.stderr
    shard_recs = sorted((tmp_path / "run" / "logs").glob("generate-shard-*_data.json"))
    assert len(shard_recs) == 3
    for p in shard_recs:
        rec = _record(p)
        assert rec["kind"] == "shard" and rec["status"] == "ok" and rec["log_files"]["markdown"] is None
    for i in range(3):  # every shard file carries its attempt's resources
        with h5py.File(tmp_path / "run" / "shards" / f"shard-{i:05d}-of-00003.h5", "r") as f:
            assert json.loads(f.attrs["resources"])["wall_s"] > 0
    _check_array(tmp_path / "run", logs, tasks=3, attempts=3)
    sub = _record(logs / "submit-a_data.json")
    titles = [s["title"] for s in sub["sections"]]
    assert titles == ["Merged run", "Array resources"] and sub["sections"][1]["data"]["tasks"] == 3
    assert sub["artifacts"][0]["kind"] == "traces" and sub["artifacts"][0]["path"].endswith("run/traces.h5")

    # a second attempt of shard 0 (done: it skips) is one more record; the next merge sums 4 attempts
    r = _run(["-m", "asd.jobs", "shard", "--config", str(cfg), "--index", "0"], logs)
    assert r.returncode == 0 and '"skipped": true' in r.stdout, r.stderr
    r = _run(["-m", "asd.jobs", "merge", "--config", str(cfg)], logs)
    assert r.returncode == 0, r.stderr
    rec = _check_array(tmp_path / "run", logs, tasks=3, attempts=4)
    assert [x["shard_index"] for x in rec["array"]["records"]] == [0, 0, 1, 2]
    assert len(list((logs / "history").glob("array-run-generate_*_data.json"))) == 1  # the first merge's record


@pytest.mark.slurm
def test_slurm_array_is_summed_into_one_record(tmp_path):
    require_cluster()
    logs = tmp_path / "logs"
    cfg = write_config(tmp_path / "s.yaml", tmp_path / "srun", shards=4, executor="slurm", num_samples=80,
                       array_parallelism=2, timeout_min=5)
    r = _run(["-m", "asd", "submit", "--config", str(cfg)], logs, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = _check_array(tmp_path / "srun", logs, tasks=4, attempts=4)
    assert rec["slurm"]["job_id"]  # the merge job's own SLURM ids
    array_ids = set()
    for p in sorted((tmp_path / "srun" / "logs").glob("generate-shard-*_data.json")):
        sl = _record(p)["slurm"]
        assert sl["job_id"] and sl["array_task_id"] is not None and sl["node"]
        array_ids.add(sl["array_job_id"])
    assert len(array_ids) == 1  # one array, four tasks
    assert all(r["slurm_job_id"] for r in rec["array"]["records"])
