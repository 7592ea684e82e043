"""The ``asd`` command's errors: one line per problem, exit status 2, no traceback, nothing written.

Every config defect class of tests/config_cases.py (the table of docs/config.md) goes through ``asd submit``
and ``asd run``: the exact lines, the exit status, and the folder holding the config unchanged (no run
folder, no run.json, no submitit folder: no job). Then a corrected config runs in the same folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asd.cli import MAX_ERROR_LINES, main
from config_cases import CASES, HIER, JOBS, ROOT, render, write_case


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("command", ["submit", "run"])
@pytest.mark.parametrize("name,body,expected", CASES, ids=[c[0] for c in CASES])
def test_defect_class(tmp_path, capsys, command, name, body, expected):
    cfg, out = tmp_path / "run.yaml", tmp_path / "run"
    write_case(body, cfg, out)
    before = _snapshot(tmp_path)
    rc = main([command, "--config", str(cfg)])
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"asd {command}: error: {render(e, cfg, out)}" for e in expected]
    assert rc == 2 and captured.out == ""
    assert _snapshot(tmp_path) == before and not out.exists()  # no run folder, run.json or job


def test_messages_stay_short(tmp_path, capsys):
    """Whatever the input, a printed line is short: the longest of all defect classes is the list of keys."""
    longest = 0
    for _, body, _ in CASES:
        cfg, out = tmp_path / "run.yaml", tmp_path / "run"
        cfg.unlink(missing_ok=True)
        write_case(body, cfg, out)
        assert main(["submit", "--config", str(cfg)]) == 2
        for line in capsys.readouterr().err.splitlines():
            longest = max(longest, len(line.replace(str(cfg), "CFG")))
    assert longest < 400


def test_many_problems_are_capped(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(render(JOBS, cfg, tmp_path / "run") + "".join(f"  bogus{i}: 1\n" for i in range(30)))
    assert main(["submit", "--config", str(cfg)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == MAX_ERROR_LINES + 1 and lines[-1] == "asd submit: error: ... and 10 more"
    assert lines[0] == f"asd submit: error: {cfg}:6: jobs.bogus0: unknown key 'bogus0' for JobConfig; valid keys: " \
                       + lines[0].split("valid keys: ")[1]


def test_config_is_a_folder(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"asd run: error: {tmp_path}: not a regular file\n"


def test_cascade_command_validates_its_overrides(tmp_path, capsys):
    """``--policy`` on the command line meets the same rules as the file: speculative needs γ ≥ 1."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(render(HIER, cfg, tmp_path))
    assert main(["cascade", "--config", str(cfg), "--policy", "speculative", "--n", "2"]) == 2
    assert capsys.readouterr().err == (
        f"asd cascade: error: {cfg}: policy.name: policy 'speculative' needs cascade.gamma >= 1 "
        "(the drafter's lookahead)\n")
    assert main(["cascade", "--config", str(cfg), "--lam", "-1"]) == 2
    assert capsys.readouterr().err == "asd cascade: error: --policy/--lam: lam must be >= 0 or inf, got -1.0\n"
    cfg.write_text("jobs:\n  output_dir: x\n")
    assert main(["cascade", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == (
        f"asd cascade: error: {cfg}: missing section 'hierarchy' (asd cascade runs the stages it lists)\n")


def test_data_prepare_refuses_a_missing_config(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["data", "prepare", "--config", str(missing), "--data-dir", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err == f"asd data: error: {missing}: config file not found\n"
    assert not (tmp_path / "d").exists()


def test_internal_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    """A bug (not a user error) prints one line and exits 1; --debug or ASD_DEBUG=1 re-raises it."""
    import asd.commands.status as status

    def broken(args):
        raise KeyError("shards")  # stands for a bug inside a command

    monkeypatch.setattr(status, "_status", broken)
    assert main(["status", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "asd status: error: internal error (a bug in asd): KeyError: 'shards' -- rerun with --debug "
        "(or ASD_DEBUG=1) for the traceback, and please report it\n")
    with pytest.raises(KeyError):
        main(["status", str(tmp_path), "--debug"])
    monkeypatch.setenv("ASD_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["status", str(tmp_path)])


def test_missing_package_is_named(capsys, monkeypatch):
    import asd.commands.status as status

    def needs(args):
        raise ModuleNotFoundError("No module named 'submitit'", name="submitit")

    monkeypatch.setattr(status, "_status", needs)
    assert main(["status", "x"]) == 2
    assert capsys.readouterr().err == (
        "asd status: error: this needs the Python package 'submitit', which is not installed (pip install it)\n")


def test_real_process_prints_no_traceback(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"jobs:\n  output_dir: x\n  seed: \xfe\n")
    r = subprocess.run([sys.executable, "-m", "asd", "submit", "--config", str(cfg)], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == f"asd submit: error: {cfg}:3: not UTF-8 text (byte 0xfe at column 9)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


@pytest.mark.slow
def test_corrected_config_runs_in_the_same_folder(tmp_path, capsys):
    """A refused config leaves nothing; the corrected one then runs there; a bad edit leaves that run intact."""
    cfg, out = tmp_path / "run.yaml", tmp_path / "run"
    good = render(JOBS, cfg, out) + "  executor: local\n  array_parallelism: 2\n"
    cfg.write_text(good + "  seed: 1\n  seed: 2\n")
    assert main(["submit", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == f"asd submit: error: {cfg}:9: duplicate key 'seed' (lines 8 and 9)\n"
    assert not out.exists()
    cfg.write_text(good + "  seed: 2\n")
    assert main(["submit", "--config", str(cfg)]) == 0, capsys.readouterr().err
    stats = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (out / "traces.h5").is_file() and stats["samples"] == 40
    cfg.write_text(good + "  seed: 2\n  shards: 0\n")
    before = _snapshot(tmp_path)
    assert main(["submit", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == f"asd submit: error: {cfg}:9: duplicate key 'shards' (lines 4 and 9)\n"
    assert _snapshot(tmp_path) == before  # the finished run is untouched


def test_other_layers_choose_their_exit_status(capsys, monkeypatch):
    """An exception with ``exit_status`` (and ``errors``) prints like a config error, with its own status."""
    import asd.commands.status as status

    class ShardFailed(RuntimeError):
        exit_status = 3
        errors = ["shard 2 of runs/x was killed (log: runs/x/submitit/1_2_log.err)", "rerun the same command"]

    def fails(args):
        raise ShardFailed("unused")

    monkeypatch.setattr(status, "_status", fails)
    assert main(["status", "x"]) == 3
    assert capsys.readouterr().err.splitlines() == [
        "asd status: error: shard 2 of runs/x was killed (log: runs/x/submitit/1_2_log.err)",
        "asd status: error: rerun the same command"]
