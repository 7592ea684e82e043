"""Synthetic run folders (tests/analysis/synth.py), written once per session through asd.traces."""

import shutil

import pytest

from tests.analysis.synth import write_run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """2 datasets × 3 seeds × 24 samples, λ ∈ {0.5, 1, 5, ∞}, ablations kappa0 and no_skips, batch 8."""
    return write_run(tmp_path_factory.mktemp("run") / "small", datasets=("testbed/gsm8k", "testbed/mmlu"),
                     seeds=(0, 1, 2), n=24)


@pytest.fixture
def run_copy(small_run, tmp_path):
    """A private copy of small_run that a test may change."""
    dst = tmp_path / "run"
    shutil.copytree(small_run, dst)
    return dst
