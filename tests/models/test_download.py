"""asd models download: everything that must stop it before a byte is written. This machine has no network:
offline mode and an unreachable endpoint are the real situations here; the transfer itself is
huggingface_hub's (resumable), unexercised in these tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asd.models.config import HierarchyConfig, StageConfig
from asd.models.download import DownloadError, check_space, hub_stages, plan_download

REPO = Path(__file__).resolve().parents[2]


def _asd(args, **env):
    e = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "asd", *args], cwd=REPO, capture_output=True, text=True, env=e,
                          timeout=120)


def test_offline_fails_at_once_with_the_reason(tmp_path):
    r = _asd(["models", "download", "--storage-path", str(tmp_path / "m")], HF_HUB_OFFLINE="1")
    assert r.returncode == 2
    assert "cannot download: HF_HUB_OFFLINE=1 is set (offline mode)" in r.stderr
    assert "asd models verify DIR" in r.stderr
    assert not (tmp_path / "m").exists()


def test_unreachable_endpoint_fails_with_the_endpoint(tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    r = _asd(["models", "download", "--storage-path", str(tmp_path / "m"), "--stage", "7b"], **env)
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Hub at http://127.0.0.1:9 ([Errno 111] Connection refused)" in r.stderr
    assert "nothing was downloaded" in r.stderr
    assert not any((tmp_path / "m").rglob("*.safetensors"))


def test_a_stage_without_a_pinned_revision_is_refused(tmp_path):
    cfg = tmp_path / "h.yaml"
    cfg.write_text(yaml.safe_dump({"hierarchy": {"name": "q", "stages": [
        {"name": "a", "model": "Qwen/Qwen2.5-7B-Instruct", "revision": "a09a35458c702b33eeacc393d103063234e8bc28"},
        {"name": "b", "model": "Qwen/Qwen2.5-14B-Instruct"}]}}))
    r = _asd(["models", "download", "--storage-path", str(tmp_path / "m"), "--config", str(cfg)])
    assert r.returncode == 2 and "stage(s) ['b'] have no pinned revision" in r.stderr


def test_every_reference_stage_is_pinned():
    from asd.run_config import load_section

    hier = load_section(REPO / "configs/qwen2.5_models.yaml", "hierarchy")
    assert [len(s.revision or "") for s in hub_stages(hier)] == [40, 40, 40, 40]


def test_disk_space_is_checked_first(tmp_path):
    with pytest.raises(DownloadError, match=r"needs 1048576\.0 GiB .* GiB are free; nothing was downloaded"):
        check_space(2**50, tmp_path / "not" / "yet")
    check_space(1, tmp_path)
    assert not (tmp_path / "not").exists()


def test_testbed_has_nothing_to_download(tmp_path):
    r = _asd(["models", "download", "--storage-path", str(tmp_path), "--config", "configs/testbed.yaml"])
    assert r.returncode == 0 and "nothing to download" in r.stdout


def test_unknown_stage_names_the_valid_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hier = HierarchyConfig("q", [StageConfig("a", "Qwen/Qwen2.5-7B-Instruct", revision="x" * 40),
                                 StageConfig("b", "Qwen/Qwen2.5-14B-Instruct", revision="y" * 40)])
    with pytest.raises(DownloadError, match=r"unknown stage\(s\) \['c'\]; valid: \['a', 'b'\]"):
        plan_download(hier, tmp_path, ["c"])
