"""asd.tracking: records of runs and commands, the schema, and the ways tracking must not take a run down."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asd import tracking
from asd.schema_check import load_schema, validate
from asd.tracking import Tracker, log_artifact, log_section, track_experiment

REPO = Path(__file__).resolve().parent.parent
ASD = [sys.executable, "-m", "asd"]


def _env(**kw) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), **kw}
    return env


def _load(folder: Path, name: str) -> tuple[dict, str]:
    rec = json.loads((folder / f"{name}_data.json").read_text())
    assert validate(rec, load_schema("tracking")) == []
    md = folder / f"{name}_comprehensive.md"
    return rec, md.read_text() if md.exists() else ""


def test_decorated_function_writes_both_files_valid_against_the_schema(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("synthetic:\n  seed: 3\njobs:\n  seed: 11\n  output_dir: x\n")
    out = tmp_path / "out.txt"
    out.write_text("result\n")

    @track_experiment("probe-run", log_dir=tmp_path / "logs", config=cfg, interval_s=0.05)
    def work(n):
        log_section("Ablation: no features", "stage features dropped", data=[{"lam": 1.0, "q": 0.9}], kind="ablation")
        log_artifact(out, "report")
        return {"quality": 0.93, "n": n}

    assert work(5) == {"quality": 0.93, "n": 5}
    rec, md = _load(tmp_path / "logs", "probe-run")
    assert rec["status"] == "ok" and rec["kind"] == "run" and rec["finished_utc"]
    assert rec["seeds"] == {"synthetic.seed": 3, "jobs.seed": 11}
    assert rec["configs"][0]["sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert rec["git"]["revision"] and "numpy" in rec["environment"]["packages"]
    assert rec["environment"]["python"]["version"] and rec["environment"]["cpu"]["logical"] >= 1
    assert rec["resources"]["wall_s"] > 0 and rec["resources"]["sampler"]["samples"] >= 2
    assert [s["title"] for s in rec["sections"]] == ["Ablation: no features", "Results (returned)"]
    assert rec["artifacts"][0]["path"] == str(out.resolve()) and rec["artifacts"][0]["bytes"] == 7
    assert md.startswith("# probe-run — ok")
    for head in ("## Results", "## Ablations", "## Files", "## Configuration", "## Environment", "## Reproduce"):
        assert head in md, head
    assert "| quality | 0.93 |" in md and "`synthetic.seed` = 3" in md


def test_exception_is_recorded_as_failed_and_propagates(tmp_path):
    @track_experiment("boom", log_dir=tmp_path)
    def boom():
        raise RuntimeError("the model fell over")

    with pytest.raises(RuntimeError, match="fell over"):
        boom()
    rec, md = _load(tmp_path, "boom")
    assert rec["status"] == "failed" and "RuntimeError: the model fell over" in rec["error"]
    assert "**failed:** `RuntimeError: the model fell over`" in md


def test_every_asd_command_runs_under_a_tracker(tmp_path):
    logs = tmp_path / "logs"
    r = subprocess.run(
        [*ASD, "--log-dir", str(logs), "models", "plan", "--gpus", "8", "--gpu-mem", "80"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rec, md = _load(logs, "models-plan-qwen2.5_models")
    assert rec["command"]["argv"][:4] == ["asd", "--log-dir", str(logs), "models"]
    assert rec["command"]["args"]["gpus"] == 8 and rec["status"] == "ok"
    assert rec["configs"][0]["path"] == "configs/qwen2.5_models.yaml"
    assert rec["sections"][0]["title"] == "Plan" and "1/1/2/4" in rec["sections"][0]["text"]
    # bad input: exit 2, one clear line, and a record that says so
    r = subprocess.run(
        [*ASD, "--log-dir", str(logs), "run", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120,
    )
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    rec, _ = _load(logs, "run-missing")
    assert rec["status"] == "error" and "missing.yaml" in rec["error"]


def test_log_dir_from_the_environment(tmp_path):
    r = subprocess.run([*ASD, "models", "plan", "--gpus", "4", "--gpu-mem", "80"], capture_output=True,
                       text=True, cwd=REPO, env=_env(ASD_LOG_DIR=str(tmp_path / "env-logs")), timeout=120)
    assert r.returncode == 1 and "no placement fits" in r.stdout   # a finding, not bad input
    rec, _ = _load(tmp_path / "env-logs", "models-plan-qwen2.5_models")
    assert rec["status"] == "error" and rec["error"] == "exit status 1"


def test_unwritable_log_folder_moves_the_record_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    code = textwrap.dedent(f"""
        from asd.tracking import track_experiment
        @track_experiment("unwritable", log_dir={str(blocker / 'logs')!r})
        def run():
            print("the run's own result: 42")
        run()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(TMPDIR=str(tmpdir)), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "the run's own result: 42" in r.stdout
    assert f"log folder {blocker / 'logs'} is not writable" in r.stderr
    fallback = tmpdir / f"asd-logs-{os.getuid()}"
    assert str(fallback) in r.stderr
    rec, _ = _load(fallback, "unwritable")
    assert rec["status"] == "ok" and "not writable" in rec["notes"][0]


def test_no_writable_folder_at_all_still_runs(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(tracking.tempfile, "gettempdir", lambda: str(blocker))
    with Tracker("nowhere", blocker / "logs", interval_s=0.05) as t:
        t.section("Results", data={"x": 1})
    err = capsys.readouterr().err
    assert "this run is not recorded on disk; the run goes on" in err
    assert t.paths == {"markdown": None, "data": None} and t.record()["status"] == "ok"


def test_a_tracker_used_twice_says_so_and_keeps_the_first_record(tmp_path, capsys):
    t = Tracker("twice", tmp_path, interval_s=0.05)
    with t:
        t.section("Results", data={"first": 1})
    first = json.loads((tmp_path / "twice_data.json").read_text())
    with t:  # the same object again: not a second run
        t.section("Results", data={"second": 2})
    err = capsys.readouterr().err
    assert "tracker 'twice' was already used in this process" in err
    assert json.loads((tmp_path / "twice_data.json").read_text()) == first

    # nested: the inner tracker's sections join the outer record; one sampler, one record
    with Tracker("outer", tmp_path, interval_s=0.05):
        with Tracker("inner", tmp_path, interval_s=0.05) as inner:
            inner.section("Inner results", data={"y": 2})
    assert "tracker 'inner' started inside 'outer'" in capsys.readouterr().err
    rec, _ = _load(tmp_path, "outer")
    assert [s["title"] for s in rec["sections"]] == ["Inner results"]
    assert "started inside" in rec["notes"][0] and not (tmp_path / "inner_data.json").exists()


def test_a_name_tracked_again_moves_the_earlier_record_to_history(tmp_path, capsys):
    @track_experiment("again", log_dir=tmp_path, interval_s=0.05)
    def run(i):
        return {"i": i}

    run(1)
    run(2)
    assert "already tracked" not in capsys.readouterr().err  # a normal second run: noted in the record only
    latest, _ = _load(tmp_path, "again")
    assert any("'again' was already tracked in this process" in n for n in latest["notes"])
    assert latest["sections"][0]["data"] == {"i": 2}
    hist = sorted((tmp_path / "history").iterdir())
    assert [p.name.rsplit("_", 1)[1] for p in hist] == ["comprehensive.md", "data.json"]
    old = json.loads(next(p for p in hist if p.name.endswith("_data.json")).read_text())
    assert old["sections"][0]["data"] == {"i": 1} and validate(old, load_schema("tracking")) == []


def test_nvml_missing_is_said_and_recorded_never_guessed(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pynvml"] = None          # as if nvidia-ml-py were not installed
        from asd.tracking import Tracker
        with Tracker("no-nvml", {str(tmp_path)!r}, interval_s=0.05):
            print("run done")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0 and "run done" in r.stdout, r.stderr
    assert "nvidia-ml-py is not installed (pip install nvidia-ml-py)" in r.stderr
    rec, md = _load(tmp_path, "no-nvml")
    gpu = rec["resources"]["gpu"]
    assert gpu["available"] is False and "nvidia-ml-py" in gpu["reason"]
    has_gpu = Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()
    if has_gpu:  # GPUs there but unmeasurable: no number at all
        assert gpu["gpu_hours"] is None and gpu["energy_j"] is None and "not available" in md
    else:  # no NVIDIA device on the machine: zero is what was measured
        assert gpu["gpu_hours"] == 0.0 and gpu["count"] == 0


def test_a_killed_run_leaves_its_last_record(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from asd.tracking import Tracker
        with Tracker("killed", {str(tmp_path)!r}, interval_s=0.02, flush_every_s=0.1) as t:
            t.section("Progress", data={{"step": 1}})
            print("started", flush=True)
            time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout.readline().strip() == "started"
        data = tmp_path / "killed_data.json"
        deadline = time.time() + 60
        while time.time() < deadline:  # wait for a periodic rewrite that holds the section
            try:
                rec = json.loads(data.read_text())
                if rec["sections"] and rec["resources"]["sampler"]["samples"] >= 3:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("no periodic record within 60 s")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        p.kill()
    rec, md = _load(tmp_path, "killed")
    assert rec["status"] == "running" and rec["resources"]["complete"] is False
    assert rec["sections"][0]["data"] == {"step": 1} and md.startswith("# killed — running")


def test_bad_names_and_kinds_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="use letters, digits"):
        track_experiment("a b/c")
    with pytest.raises(ValueError, match="valid: 'run', 'shard', 'array'"):
        Tracker("x", tmp_path, kind="batch")
    with Tracker("kinds", tmp_path, interval_s=0.05) as t:
        with pytest.raises(ValueError, match="valid: results, ablation, configuration, notes"):
            t.section("t", kind="figures")


def test_log_section_outside_a_run_says_it_is_not_recorded(capsys, monkeypatch):
    monkeypatch.setattr(tracking, "_warned_untracked", [])
    log_section("Results", data={"x": 1})
    log_section("Results", data={"x": 2})
    err = capsys.readouterr().err
    assert err.count("outside a tracked run: not recorded") == 1


def test_command_names():
    import argparse

    ns = argparse.Namespace(command="models", models_command="plan", config="configs/qwen2.5_models.yaml")
    assert tracking.command_name(ns) == "models-plan-qwen2.5_models"
    assert tracking.command_name(argparse.Namespace(command="status", run="runs/x")) == "status"
    assert tracking.safe_name("../a b:c") == "a_b_c"


def test_asd_run_record_holds_the_job_statistics(tmp_path, capsys):
    from asd.cli import main

    cfg = tmp_path / "small.yaml"
    cfg.write_text("run: {job: synthetic}\nsynthetic: {batch: 2000, draws: 4, lambdas: [0.5, .inf], "
                   "timing_repeats: 1, seed: 5}\npolicy: {lam: 2.0}\n")
    out = tmp_path / "stats.json"
    before = os.environ.get("ASD_LOG_DIR")
    assert main(["--log-dir", str(tmp_path / "logs"), "run", "--config", str(cfg), "--out", str(out)]) == 0
    assert os.environ.get("ASD_LOG_DIR") == before  # the command's export is put back
    rec, md = _load(tmp_path / "logs", "run-small")
    stats = json.loads(out.read_text())["stats"]
    by = {s["title"]: s for s in rec["sections"]}
    assert by["Decisions per λ"]["data"][0]["quality"] == stats["per_lambda"][0]["quality"]
    assert by["Decisions per λ"]["data"][1]["lam"] == "inf"  # non-finite numbers as strings in JSON
    assert set(by["Baselines"]["data"]) == set(stats["baselines"]) and by["cost_model"]["kind"] == "configuration"
    assert rec["seeds"] == {"synthetic.seed": 5} and rec["artifacts"][0]["kind"] == "statistics"
    assert "### Decisions per λ" in md and "| dp |" in md
