"""What a run needs to be reproduced: command line, configs and their hashes, seeds, git revision and the
uncommitted diff, installed packages, Python, OS, CPU, GPUs, driver and CUDA versions, SLURM ids.

Everything here is cheap (no torch import: the CUDA runtime version is read from torch only if the run
imported it) and never raises on a missing tool: a field it cannot read is ``None``. Used by
:mod:`asd.tracking`; docs/tracking.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from asd.provenance import REPO_ROOT, git_revision

MAX_DIFF_CHARS = 256_000  # the diff kept in a record; longer diffs are cut (their sha256 is of the whole)
MAX_CONFIG_BYTES = 1_000_000  # config files whose text is kept in the record
SLURM_VARS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "array_task_count": "SLURM_ARRAY_TASK_COUNT",
    "node": "SLURMD_NODENAME",
    "nodelist": "SLURM_JOB_NODELIST",
    "partition": "SLURM_JOB_PARTITION",
    "account": "SLURM_JOB_ACCOUNT",
    "cluster": "SLURM_CLUSTER_NAME",
    "restart_count": "SLURM_RESTART_COUNT",
    "cpus_on_node": "SLURM_CPUS_ON_NODE",
    "gpus": "SLURM_GPUS_ON_NODE",
}
# environment variables that change what a run computes or where it runs
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "ASD_LOG_DIR",
    "ASD_GIT_REVISION",
    "NCCL_NVLS_ENABLE",
)


def command_line(argv: list[str] | None = None) -> dict:
    """``{"argv", "command_line" (shell-quoted), "cwd", "executable"}`` of this process."""
    argv = list(sys.argv if argv is None else argv)
    return {"argv": argv, "command_line": shlex.join(argv), "cwd": os.getcwd(), "executable": sys.executable}


def git_state(root: Path = REPO_ROOT) -> dict:
    """Revision, dirty flag, the uncommitted diff against HEAD (cut at ``MAX_DIFF_CHARS``) and untracked files."""
    if Path(root).resolve() == REPO_ROOT:
        rev = git_revision()  # honours ASD_GIT_REVISION (an installed copy or a device run without .git)
    else:
        sha = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
        dirty = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
        rev = "unknown" if sha is None else sha + ("-dirty" if dirty else "")
    out: dict[str, Any] = {"revision": rev, "dirty": rev.endswith("-dirty"), "root": str(root)}
    diff = _run(["git", "-C", str(root), "diff", "HEAD", "--no-color", "--no-ext-diff"])
    untracked = _run(["git", "-C", str(root), "ls-files", "--others", "--exclude-standard"])
    if diff is None:  # not a git checkout (an installed copy): the revision may still come from ASD_GIT_REVISION
        out.update(diff=None, diff_sha256=None, diff_truncated=False, untracked=None)
        return out
    out["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    out["diff_truncated"] = len(diff) > MAX_DIFF_CHARS
    out["diff"] = diff[:MAX_DIFF_CHARS]
    out["untracked"] = (untracked or "").split("\n")[:200] if untracked else []
    return out


def _run(cmd: list[str], timeout: float = 20.0) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def packages() -> dict[str, str]:
    """``{distribution name: version}`` of every installed distribution, sorted by name."""
    from importlib import metadata

    out = {}
    for d in metadata.distributions():
        name = d.metadata["Name"] if d.metadata else None
        if name:
            out[name] = d.version
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def cpu() -> dict:
    """Model name, logical CPUs on the machine and usable by this process, memory total (bytes)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or platform.processor() or None,
        "logical": os.cpu_count(),
        "usable": usable,
        "memory_bytes": mem,
    }


def slurm() -> dict | None:
    """The SLURM ids of this process (``None`` outside a SLURM job)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {k: os.environ.get(v) for k, v in SLURM_VARS.items()}


def torch_info() -> dict | None:
    """torch version and CUDA runtime, only if this process imported torch (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info: dict[str, Any] = {"version": torch.__version__, "cuda_runtime": getattr(torch.version, "cuda", None)}
    try:
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if torch.cuda.is_available():
            info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # a broken CUDA set-up must not break the record
        info["error"] = f"{type(e).__name__}: {e}"
    return info


def environment(gpus: Any = None) -> dict:
    """The machine and software record (``gpus``: an :class:`asd.resources.GPUs` for devices and driver)."""
    gpu_list = gpus.describe() if gpus is not None and gpus.available else []
    drv = gpus.driver() if gpus is not None else {"driver_version": None, "cuda_driver_version": None}
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "os": {"platform": platform.platform(), "kernel": platform.release(), "hostname": platform.node()},
        "cpu": cpu(),
        "gpus": gpu_list,
        "gpu_note": None if gpu_list else (getattr(gpus, "reason", None) or "not queried"),
        "driver_version": drv["driver_version"],
        "cuda_driver_version": drv["cuda_driver_version"],
        "torch": torch_info(),
        "packages": packages(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }


def config_record(path: str | Path) -> dict:
    """A config file as a record: path, sha256 of its bytes, its text (when small) and the seeds in it."""
    p = Path(path)
    data = p.read_bytes()
    rec: dict[str, Any] = {
        "path": str(path),
        "resolved": str(p.resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "text": data.decode("utf-8", "replace") if len(data) <= MAX_CONFIG_BYTES else None,
        "seeds": {},
    }
    if p.suffix in (".yaml", ".yml", ".json") and rec["text"] is not None:
        # the strict reader (asd.config_yaml): it refuses an alias bomb before expanding it, where a plain
        # yaml.safe_load shares the aliased lists and the walk below would visit every expanded path
        from asd.config_yaml import parse

        # a config the command itself will reject: its error is the command's to report
        with contextlib.suppress(Exception):
            rec["seeds"] = find_seeds(parse(rec["text"], str(path)).data)
    return rec


def find_seeds(tree: Any, prefix: str = "") -> dict[str, int]:
    """Every ``seed`` / ``*_seed`` key of a nested config, by dotted path.

    Example: ``find_seeds({"jobs": {"seed": 1}, "synthetic": {"seed": 0}}) == {"jobs.seed": 1, "synthetic.seed": 0}``.
    """
    out: dict[str, int] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if (k == "seed" or str(k).endswith("_seed")) and isinstance(v, int) and not isinstance(v, bool):
                out[key] = v
            else:
                out.update(find_seeds(v, key))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(find_seeds(v, f"{prefix}[{i}]"))
    return out
