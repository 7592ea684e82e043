import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# every `asd` command writes a tracking record (asd.tracking): keep the test runs' records out of the checkout
os.environ.setdefault("ASD_LOG_DIR", tempfile.mkdtemp(prefix="asd-test-logs-"))
# on a pytest-xdist worker (below) torch and the processes a test starts take one intra-op thread: two workers of
# two threads each on two cores made the tiny models' products many times slower, not faster
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The suite runs on three pytest-xdist workers (`make test`: -n 3). Work is handed out a module at a time (a
# module's fixtures are built once), and the modules that submit to the SLURM cluster (those that mark a test
# `slurm`) form one unit, run in order on one worker: jobs of two tests never share the node's two CPUs, and the
# SLURM test of tests/evaluation/test_run.py finds the module's local run built on its own worker.
TESTS = Path(__file__).resolve().parent


def slurm_modules() -> frozenset[str]:
    """The test modules (paths from the repository root) whose source marks a test `slurm`."""
    return frozenset(
        f"tests/{p.relative_to(TESTS).as_posix()}" for p in TESTS.rglob("test_*.py") if "mark.slurm" in p.read_text()
    )


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, unknown without it
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    slurm = slurm_modules()

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "slurm" if module in slurm else module

    return ModuleScheduling(config, log)
