"""The one check of the tests that submit to the real SLURM cluster: skip when it is not up.

(tests/ is on sys.path through tests/conftest.py, so test modules import this as ``slurm_cluster``.)
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def cluster_up() -> bool:
    """sbatch is installed and sinfo shows a node that can take work."""
    if shutil.which("sbatch") is None:
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    return r.returncode == 0 and any(s in r.stdout for s in ("idle", "mix", "alloc"))


def require_cluster() -> None:
    """pytest.skip with the way to start one unless the cluster is up."""
    if not cluster_up():
        pytest.skip("no SLURM cluster: run `bash scripts/slurm_up.sh` as root (make test does)")
