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


@pytest.mark.slow
def test_submit_sbatch_works_from_an_installed_wheel(tmp_path):
    """Build the wheel (CPU extension only), install it into a plain folder and run `asd submit --sbatch`
    from outside the source tree: the templates come from the installed package and match the golden files."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (repo / ".git").exists() or shutil.which("cmake") is None:
        pytest.skip("needs a git checkout and cmake to build the wheel")
    pytest.importorskip("pybind11", reason="the extension's build needs pybind11 (requirements/test.txt)")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in files:                                          # the tracked tree, not the build outputs
        if (repo / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, src / name)
    # CPU extension only, unoptimized: what is tested is the wheel's contents and entry points, not the kernels'
    # speed (a Debug build compiles in about 60% of a Release build's time here)
    env = {**os.environ, "ASD_BUILD_CUDA": "off", "ASD_BUILD_TYPE": "Debug"}
    env.pop("PYTHONPATH", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], env=env, check=True, timeout=1200, capture_output=True)
    wheel = next((tmp_path / "dist").glob("asd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"asd/jobs/templates/{t}" for t, _ in SCRIPTS.values()} <= set(names)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(tmp_path / "site"), str(wheel)], env=env, check=True, timeout=300, capture_output=True)
    work = tmp_path / "work"                                    # no source tree here or on the path
    (work / "tests/golden/sbatch").mkdir(parents=True)
    shutil.copy(GOLDEN / "run.yaml", work / "tests/golden/sbatch/run.yaml")
    env["PYTHONPATH"] = str(tmp_path / "site")
    where = subprocess.run([sys.executable, "-c", "import asd.jobs.sbatch as s; print(s.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(tmp_path / "site")), where
    r = subprocess.run([sys.executable, "-m", "asd", "submit", "--config", "tests/golden/sbatch/run.yaml",
                        "--sbatch", "slurm/out"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in SCRIPTS:
        text = (work / "slurm/out" / name).read_text().replace(str(work), "/home/user/asd")
        assert text == (GOLDEN / name).read_text(), name
