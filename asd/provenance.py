"""Provenance attached to every output file: git revision, versions, hardware, schema."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def git_revision() -> str:
    """``<sha>`` or ``<sha>-dirty``; ``"unknown"`` outside a git checkout."""
    env_rev = os.environ.get("ASD_GIT_REVISION")
    if env_rev:
        return env_rev
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict:
    """Software and hardware this process runs on (cheap; imports torch only if already imported)."""
    import sys

    import numpy as np

    import asd

    env = {
        "asd_version": asd.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["cuda"] = torch.version.cuda
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_count"] = torch.cuda.device_count()
    tf = sys.modules.get("transformers")
    if tf is not None:
        env["transformers"] = tf.__version__
    return env


def provenance(config: dict | None = None, schema_version: int | None = None, **extra) -> dict:
    """The record every output carries: config, git revision, schema version, time, environment."""
    rec: dict[str, Any] = {
        "git_revision": git_revision(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    if schema_version is not None:
        rec["schema_version"] = schema_version
    if config is not None:
        rec["config"] = config
    rec.update(extra)
    return rec
