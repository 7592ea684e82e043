"""The suite collects without optional packages: modules that need one skip with a reason, none errors.

Each case runs pytest in a subprocess where a package is made unimportable by a ``sitecustomize`` that
hides it from every import finder (``import x`` raises ModuleNotFoundError, ``importlib.util.find_spec``
returns None: as on a machine without it).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHIM = '''
import os, sys
_BLOCK = set(filter(None, os.environ.get("ASD_TEST_HIDE", "").split(",")))
class _Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCK:
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, a):
        return getattr(self.inner, a)
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
'''

# package → a test module that needs it and must be skipped (with this reason) rather than fail to import
CASES = {
    "submitit": ("tests/jobs/test_executor.py", "submitit is not installed"),
    "h5py": ("tests/test_traces.py", "h5py is not installed"),
    "scipy": ("tests/test_cascade_sampling.py", "scipy is not installed"),
    "torch": ("tests/test_cascade.py", "torch is not installed"),
    "pandas": (None, None),
    "vllm": ("tests/models/test_vllm_engine.py", "vLLM is not installed"),
}


def _run(tmp_path: Path, hide: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(SHIM)
    env = {**os.environ, "ASD_TEST_HIDE": hide, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("package", sorted(CASES))
def test_collects_without(tmp_path, package):
    probe = _run(tmp_path, package, "-c", f"import importlib.util as u; assert u.find_spec({package!r}) is None; "
                                          f"import {package}")
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, "the shim did not hide the package"
    r = _run(tmp_path, package, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "error" not in out.splitlines()[-1].lower(), out[-3000:]
    module, reason = CASES[package]
    if module:
        assert any(line.startswith(f"SKIPPED [1] {module}:") and reason in line for line in out.splitlines()), out[-3000:]


@pytest.mark.slow
def test_gpu_marker_runs_without_submitit(tmp_path):
    """``pytest -m gpu`` on a machine without submitit (nor a GPU here): every selected test skips, with a reason."""
    r = _run(tmp_path, "submitit", "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "tests")
    out = r.stdout + r.stderr
    last = out.strip().splitlines()[-1]
    assert r.returncode == 0 and "error" not in last and "failed" not in last, out[-3000:]
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skips and all(line.split(": ", 1)[1].strip() for line in skips), out[-3000:]
    assert any("submitit is not installed" in line for line in skips), out[-3000:]


def test_the_slurm_unit_of_the_parallel_run_holds_every_module_with_a_slurm_test(tmp_path):
    """tests/conftest.py hands the modules it finds marking a test `slurm` to one xdist worker as one unit;
    the markers pytest collects name the same modules."""
    from conftest import slurm_modules

    r = _run(tmp_path, "", "-m", "pytest", "--collect-only", "-q", "-m", "slurm", "-p", "no:cacheprovider", "tests")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    collected = {line.split("::", 1)[0] for line in r.stdout.splitlines() if "::" in line}
    assert collected and collected == slurm_modules()
