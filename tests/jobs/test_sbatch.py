"""Golden files for the sbatch scripts rendered from tests/golden/sbatch/run.yaml.

On a mismatch the test prints a unified diff; if the change is intended, update the golden files with
    ASD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/jobs/test_sbatch.py
and review `git diff tests/golden/`.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from asd.jobs.sbatch import SCRIPTS, render_all, render_text

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sbatch"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sbatch")
    paths = render_all(GOLDEN / "run.yaml", tmp / "slurm/out", workdir="/home/user/asd", make_log_dir=False)
    return {p.name: p.read_text() for p in paths} | {"_out": tmp / "slurm/out"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_sbatch_matches_golden(rendered, name, monkeypatch):
    golden = GOLDEN / name
    text = rendered[name].replace(str(GOLDEN / "run.yaml"), "tests/golden/sbatch/run.yaml")
    text = text.replace(str(rendered["_out"]), "slurm/out")
    if os.environ.get("ASD_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    expected = golden.read_text() if golden.exists() else ""
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            f"golden/{name}", f"rendered/{name}"))
        pytest.fail(f"{name} differs from its golden file:\n{diff}\nIf intended: ASD_UPDATE_GOLDEN=1 "
                    f".venv/bin/python -m pytest tests/jobs/test_sbatch.py, then review git diff tests/golden/")


def test_rendered_scripts_carry_the_node_layout(rendered):
    gen = rendered["array_generate.sbatch"]
    assert "#SBATCH --array=0-63%16" in gen and "#SBATCH --gpus-per-node=8" in gen   # TP 1+1+2+4
    assert "#SBATCH --signal=B:USR2@300" in gen and "--index \"$SLURM_ARRAY_TASK_ID\"" in gen
    assert "gpus" not in rendered["merge.sbatch"]


def test_placeholder_lines_that_render_empty_are_dropped_and_unknown_ones_fail():
    assert render_text("a\n{{x}}\nb {{y}}", {"x": "", "y": "1"}) == "a\nb 1\n"
    with pytest.raises(KeyError, match="zz"):
        render_text("{{zz}}", {})
