"""Bad input to asd analyze / asd report: a clear error naming what is wrong, and nothing written."""

import json
import os

import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (requirements/base.txt)")

from asd.analysis.run import RunError, load_run
from asd.cli import main
from asd.traces import SCHEMA_VERSION


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused(root, capsys, match, cmd="analyze"):
    before = _listing(root) if root.is_dir() else None
    rc = main([cmd, str(root), "--resamples", "200"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert match in err, err
    if before is not None:
        assert _listing(root) == before  # nothing written
    return err


def test_a_good_run_loads(small_run):
    run = load_run(small_run)
    assert run.K == 4 and run.seeds == [0, 1, 2] and run.datasets == ["testbed/gsm8k", "testbed/mmlu"]
    assert run.stage_names == ["s0", "s1", "s2", "s3"] and run.mode == "online"
    c = run.find("testbed/mmlu", 2, "dp", 1.0)
    assert c is not None and c.lam == 1.0 and run.find("testbed/mmlu", 2, "lossless", float("inf")) is not None


def test_not_a_run_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    _refused(tmp_path, capsys, "not an evaluation run folder: no grid.json")
    _refused(tmp_path, capsys, "not an evaluation run folder", cmd="report")
    rc = main(["analyze", str(tmp_path / "absent")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_grid_of_another_schema_version(run_copy, capsys):
    g = json.loads((run_copy / "grid.json").read_text())
    g["schema_version"] = 2
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "grid schema version 2 but this asd reads version 1")
    g["schema_version"], g["schema"] = 1, "something-else"
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "schema 'something-else'")
    (run_copy / "grid.json").write_text('{"schema": "asd-eval-grid",\n "schema_version": 1,\n "cells": [,]}')
    _refused(run_copy, capsys, "line 3: not valid JSON")


def test_traces_of_another_schema_version(run_copy, capsys):
    p = next((run_copy / "cells").glob("*--dp-lam1--seed1/traces.h5"))
    with h5py.File(p, "a") as f:
        f.attrs["schema_version"] = 1
    _refused(run_copy, capsys, f"trace schema version 1 but this asd reads version {SCHEMA_VERSION}")


def test_missing_and_unfinished_cells(run_copy, capsys):
    gone = next((run_copy / "cells").glob("*gsm8k--threshold-tau0.7--seed2/traces.h5"))
    gone.unlink()
    err = _refused(run_copy, capsys, "missing cells: 1 cell(s) without traces")
    assert "testbed-gsm8k--threshold-tau0.7--seed2" in err
    half = next((run_copy / "cells").glob("*mmlu--single-s1--seed0/traces.h5"))
    os.replace(half, half.with_name("traces.h5.partial"))
    _refused(run_copy, capsys, "still running or crashed (only a .partial file): testbed-mmlu--single-s1--seed0")


def test_a_seed_without_the_final_stage_alone(run_copy, capsys):
    g = json.loads((run_copy / "grid.json").read_text())
    g["cells"] = [c for c in g["cells"] if c["cell"] != "testbed-mmlu--single-s3--seed1"]
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "the final stage alone (policy single, stage 3) of dataset 'testbed/mmlu' seed 1")


def test_cells_of_one_seed_with_other_prompts(run_copy):
    p = next((run_copy / "cells").glob("*gsm8k--dp-lam5--seed0/traces.h5"))
    with h5py.File(p, "a") as f:
        ids = f["sample_id"][:]
        ids[-1] += 999
        f["sample_id"][:] = ids
    with pytest.raises(RunError, match="hold different sample ids"):
        load_run(run_copy)


def test_bad_cell_fields(run_copy, capsys):
    g = json.loads((run_copy / "grid.json").read_text())
    g["cells"][0]["policy"] = "greedy"
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "unknown policy 'greedy'; valid: dp, single")
    g["cells"][0]["policy"] = "dp"
    g["cells"][0]["lam"] = "lots"
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "lam 'lots' is not a number or \"inf\"")
    del g["cells"][0]["traces"]
    (run_copy / "grid.json").write_text(json.dumps(g))
    _refused(run_copy, capsys, "missing field(s) ['traces']")


def test_an_existing_analysis_is_kept_on_bad_input(run_copy, capsys):
    (run_copy / "analysis.json").write_text('{"kept": true}')
    (next((run_copy / "cells").glob("*mmlu--oracle-lam1--seed2/traces.h5"))).unlink()
    _refused(run_copy, capsys, "missing cells")
    assert json.loads((run_copy / "analysis.json").read_text()) == {"kept": True}
