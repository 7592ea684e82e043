"""``asd models download --storage-path DIR``: fetch a hierarchy's checkpoints from the Hugging Face Hub.

Each stage's repository is fetched at the commit its config pins (``stages[].revision``; a stage without
one is refused: "main" moves) into ``DIR/<hub id>`` through ``huggingface_hub.snapshot_download``, which
resumes interrupted files (partial downloads are kept under ``DIR/<hub id>/.cache/huggingface``). Only
what inference needs is fetched (``ALLOW``). Before any byte is written:

1. offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) → a clear error at once;
2. a dry run lists every file and its size (an unreachable Hub fails here, at once, with the endpoint);
3. the bytes still to fetch must fit in the free space of ``DIR``'s file system (with a margin).

After the download every stage is verified (``asd.models.verify``). Embedded (``testbed:``) and local
folder stages are skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from asd.models.config import HierarchyConfig, StageConfig
from asd.models.verify import TESTBED, stage_folder

ALLOW = ["*.json", "*.safetensors", "merges.txt", "vocab.json", "LICENSE*"]
SPACE_MARGIN = 1.02  # need 2 % more free space than the files (file-system overhead, metadata)


class DownloadError(ValueError):
    """The download cannot start (offline, Hub unreachable, no space, no pinned revision)."""


def hub_stages(hier: HierarchyConfig) -> list[StageConfig]:
    """Stages that come from the Hub (not ``testbed:`` nor a local folder)."""
    return [s for s in hier.stages if not s.model.startswith(TESTBED) and not Path(s.model).is_dir()]


def offline_reason() -> str | None:
    """Why the Hub cannot be used from this process (None if nothing forbids it)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var]} is set (offline mode)"
    try:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return "huggingface_hub is in offline mode (HF_HUB_OFFLINE)"
    except ImportError as e:
        raise DownloadError("asd models download needs huggingface_hub (pip install huggingface_hub)") from e
    return None


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    p = folder.resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_space(need: int, folder: Path) -> None:
    """DownloadError naming both numbers when ``need`` bytes (× margin) do not fit on ``folder``'s disk."""
    free = free_bytes(folder)
    if need * SPACE_MARGIN > free:
        raise DownloadError(
            f"not enough disk space on {folder}: the download needs {need / 2**30:.1f} GiB "
            f"(+{(SPACE_MARGIN - 1) * 100:.0f} % margin), {free / 2**30:.1f} GiB are free; nothing was downloaded"
        )


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """One request, no retries: DownloadError at once when the endpoint cannot be reached (any HTTP answer,
    even 401 or 404, means it can; huggingface_hub itself would retry with back-off for tens of seconds)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot reach the Hub at {_endpoint()} ({reason}); check the network or HF_ENDPOINT; "
            "nothing was downloaded"
        ) from e


def plan_download(hier: HierarchyConfig, root: Path, only: list[str] | None = None) -> list[dict]:
    """The dry run: per stage ``{"stage", "repo", "revision", "folder", "files", "bytes", "to_fetch"}``.

    Raises DownloadError when offline, when a stage has no pinned revision, or when the Hub cannot be reached.
    """
    stages = hub_stages(hier)
    if only:
        names = [s.name for s in hier.stages]
        bad = [n for n in only if n not in names]
        if bad:
            raise DownloadError(f"unknown stage(s) {bad}; valid: {names}")
        stages = [s for s in stages if s.name in only]
    unpinned = [s.name for s in stages if not s.revision]
    if unpinned:
        raise DownloadError(
            f"stage(s) {unpinned} have no pinned revision: add `revision: <commit sha>` to each stage in the "
            "config (a branch such as 'main' moves; a campaign needs the same weights every time)"
        )
    why = offline_reason()
    if why:
        raise DownloadError(
            f"cannot download: {why}. Run on a machine with network access to {_endpoint()} (unset the "
            "variable), or copy the model folders into the storage path and run `asd models verify DIR`"
        )
    if stages:
        check_reachable(f"{_endpoint()}/api/models/{stages[0].model}/revision/{stages[0].revision}")
    from huggingface_hub import snapshot_download

    out = []
    for s in stages:
        folder = stage_folder(root, s)
        try:
            files = snapshot_download(
                s.model, revision=s.revision, local_dir=folder, allow_patterns=ALLOW, dry_run=True, etag_timeout=10
            )
        except Exception as e:  # connection refused, DNS, HTTP 401/404 from the Hub: all stop here
            raise DownloadError(
                f"cannot reach the Hub at {_endpoint()} for {s.model}@{s.revision} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); nothing was downloaded"
            ) from e
        assert isinstance(files, list)
        out.append(
            {
                "stage": s.name,
                "repo": s.model,
                "revision": s.revision,
                "folder": str(folder),
                "files": len(files),
                "bytes": sum(f.file_size or 0 for f in files),
                "to_fetch": sum(f.file_size or 0 for f in files if f.will_download),
            }
        )
    return out


def download(hier: HierarchyConfig, root: str | Path, only: list[str] | None = None) -> list[dict]:
    """Dry run, space check, then fetch every Hub stage into ``root``; returns the dry-run rows."""
    root = Path(root)
    rows = plan_download(hier, root, only)
    check_space(sum(r["to_fetch"] for r in rows), root)
    from huggingface_hub import snapshot_download

    for r in rows:
        snapshot_download(r["repo"], revision=r["revision"], local_dir=r["folder"], allow_patterns=ALLOW)
    return rows
