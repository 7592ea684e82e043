"""Run model-written Python in a sandbox: limits, isolation, verdicts.

``run_program(source, cfg) -> SandboxResult`` runs one program in a fresh
subprocess and returns one of four verdicts:

- ``pass``: the program ran to its last line (exit 0 and the one-time nonce
  came back on the result pipe: leaving early with ``os._exit(0)`` is no pass);
- ``fail``: it raised, exited early, or was killed by a signal or a limit other
  than time (memory, file size, processes, output);
- ``timeout``: wall time (``wall_s``) or CPU time (``cpu_s``) ran out; the whole
  process tree is killed;
- ``error``: the sandbox itself could not be set up (not the program's fault).

Isolation (details and the hostile cases tested in docs/sandbox.md):

- ``namespaces`` (as root, where ``unshare`` is permitted; the default ``auto``
  picks it when it works): new PID, network and mount namespaces, the run's own
  random uid/gid, private tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock,
  closed directories such as /root hidden, the work dir at /tmp/work;
- ``audit`` (fallback): a ``sys.addaudithook`` in the child refuses sockets,
  process creation, signals, ctypes and writes outside the work dir. Weaker: an
  audit hook is Python-level, a determined program can get around it.

Both: ``setrlimit`` on CPU seconds, address space, file size, process count (per
uid, namespaces mode), open files, no core files; a fresh temporary directory as
cwd, HOME and TMPDIR, removed afterwards; an environment built from scratch
(nothing of ours leaks: no secrets); stdin from /dev/null; stdout and stderr
captured up to ``output_bytes`` each and drained beyond that.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from asd.config_loader import check_fields

CHILD = Path(__file__).with_name("_sandbox_child.py")
SETUP_FAILED = 121
VERDICTS = ("pass", "fail", "timeout", "error")
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
}


@dataclass
class SandboxConfig:
    """Limits of one sandboxed run — ``configs/evaluation.yaml`` section ``sandbox``."""

    wall_s: float = 10.0  # wall-clock seconds before the process tree is killed (verdict timeout)
    cpu_s: float = 10.0  # CPU seconds (RLIMIT_CPU, rounded up to whole seconds)
    memory_mb: int = 1024  # address space, MiB (RLIMIT_AS)
    file_size_mb: int = 16  # largest file the program may write, MiB (RLIMIT_FSIZE)
    max_procs: int = 32  # processes and threads of the run's uid (RLIMIT_NPROC; namespaces mode)
    max_files: int = 64  # open file descriptors (RLIMIT_NOFILE)
    tmpfs_mb: int = 16  # size of each private tmpfs (namespaces mode)
    output_bytes: int = 65536  # stdout and stderr each kept up to this many bytes
    isolation: Literal["auto", "namespaces", "audit"] = "auto"
    workers: int = 2  # parallel runs in run_many

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        for name in ("wall_s", "cpu_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("memory_mb", "file_size_mb", "max_procs", "max_files", "tmpfs_mb", "output_bytes", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class SandboxResult:
    verdict: str  # one of VERDICTS
    detail: str  # why: exception type and message, signal, limit
    returncode: int | None  # exit status of the launcher (128+signal when killed by one)
    stdout: str  # first output_bytes of stdout (utf-8, errors replaced)
    stderr: str
    truncated: bool  # stdout or stderr was longer than output_bytes
    wall_s: float  # seconds from start to verdict
    isolation: str  # "namespaces" or "audit"
    uid: int | None = None  # the run's own uid (namespaces mode): nothing may be left running under it

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether this process may create PID, network and mount namespaces (as root; tried once)."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    probe = (
        subprocess.run(["unshare", "--pid", "--net", "--mount", "--fork", "true"], capture_output=True, timeout=30)
        if shutil.which("unshare")
        else None
    )
    return probe is not None and probe.returncode == 0


@lru_cache(maxsize=1)
def _namespaces_work() -> bool:
    """A real run in namespaces mode passes (the probe above does not try the tmpfs and bind mounts)."""
    return run_program("pass", SandboxConfig(isolation="namespaces")).verdict == "pass"


def resolve_isolation(cfg: SandboxConfig) -> str:
    if cfg.isolation == "audit":
        return "audit"
    if cfg.isolation == "namespaces":
        if not namespaces_available():
            raise ValueError(
                "sandbox.isolation: 'namespaces' needs root and permission to unshare "
                "PID/network/mount namespaces here; use 'auto' or 'audit'"
            )
        return "namespaces"
    if namespaces_available() and _namespaces_work():
        return "namespaces"
    _warn_fallback()
    return "audit"


@lru_cache(maxsize=1)
def _warn_fallback() -> None:
    import warnings

    warnings.warn(
        "sandbox: PID/network/mount namespaces are not available here; running generated code with "
        "the weaker audit-hook isolation (docs/sandbox.md)",
        RuntimeWarning,
        stacklevel=3,
    )


def _closed_ancestors(paths: Sequence[str]) -> list[str]:
    """Highest ancestor of each path that other users cannot traverse (e.g. /root, mode 0700)."""
    out = set()
    for p in paths:
        parts = Path(p).parts
        for i in range(2, len(parts) + 1):
            anc = str(Path(*parts[:i]))
            if not os.stat(anc).st_mode & 0o001:
                out.add(anc)
                break
    return sorted(out)


def _spec(cfg: SandboxConfig, isolation: str, workdir: str, result_fd: int) -> dict:
    ns = isolation == "namespaces"
    uid = secrets.randbelow(2**30) + 2**20 if ns else None  # the run's own ids, unused by anything else
    expose = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)})
    env = dict(SAFE_ENV, HOME=workdir, TMPDIR=workdir)
    return {
        "namespaces": ns,
        "uid": uid,
        "gid": uid,
        "env": env,
        "result_fd": result_fd,
        "expose": expose,
        "hide": _closed_ancestors(expose) if ns else [],
        "site_packages": [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))],
        "cpu_s": cfg.cpu_s,
        "memory_mb": cfg.memory_mb,
        "file_size_mb": cfg.file_size_mb,
        "max_procs": cfg.max_procs,
        "max_files": cfg.max_files,
        "tmpfs_mb": cfg.tmpfs_mb,
    }


def run_program(source: str, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run Python ``source`` in the sandbox; see the module docstring for verdicts."""
    cfg = cfg or SandboxConfig()
    isolation = resolve_isolation(cfg)
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="asd-sandbox-")
    r_fd, w_fd = os.pipe()  # result pipe: the child reports {"nonce", "status"} on w_fd
    nonce = secrets.token_hex(16)
    try:
        try:
            spec = _spec(cfg, isolation, workdir, w_fd)
            (Path(workdir) / "spec.json").write_text(json.dumps(spec))
            (Path(workdir) / "program.py").write_text(source)
            shutil.copyfile(CHILD, Path(workdir) / "child.py")
            if spec["uid"] is not None:
                os.chown(workdir, spec["uid"], spec["gid"])
            os.chmod(workdir, 0o755)
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "child.py", "launch"],
                cwd=workdir,
                env=spec["env"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(w_fd,),
                start_new_session=True,
            )
        except OSError as e:
            return SandboxResult(
                "error", f"could not start: {e}", None, "", "", False, time.monotonic() - t0, isolation
            )
        finally:
            os.close(w_fd)  # exactly once: only the child holds the write end now (EOF when it is gone)
        res = _supervise(proc, cfg, isolation, t0, r_fd, nonce)
        res.uid = spec["uid"]
        return res
    finally:
        os.close(r_fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(
    proc: subprocess.Popen, cfg: SandboxConfig, isolation: str, t0: float, r_fd: int, nonce: str
) -> SandboxResult:
    try:
        proc.stdin.write(nonce.encode() + b"\n")
        proc.stdin.close()
    except OSError:
        pass
    out, err, truncated, timed_out = _collect(proc, cfg, t0)
    report = _read_report(r_fd)
    rc = proc.returncode
    verdict, detail = _verdict(rc, report, nonce, timed_out, err)
    return SandboxResult(
        verdict,
        detail,
        rc,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        truncated,
        time.monotonic() - t0,
        isolation,
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher's process group: launcher, namespace init (whose death kills the rest), program."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _collect(proc: subprocess.Popen, cfg: SandboxConfig, t0: float):
    """Read stdout/stderr until EOF or the wall limit; keep the first ``output_bytes`` of each."""
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    truncated = timed_out = False
    sel = selectors.DefaultSelector()
    for f in bufs:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    deadline = t0 + cfg.wall_s
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            _kill_tree(proc)
            break
        for key, _ in sel.select(timeout=min(left, 0.5)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buf = bufs[key.fileobj]
            room = cfg.output_bytes - len(buf)
            if len(chunk) > room:
                truncated = True
            if room > 0:
                buf += chunk[:room]
    sel.close()
    if not timed_out and not _exited_unreaped(proc.pid, deadline):
        timed_out = True
    # the launcher is still unreaped here (a zombie at worst), so its pid, the group id, cannot have been
    # reused: killing the group now never hits another process; it ends anything left in it
    _kill_tree(proc)
    proc.wait()
    for f in bufs:
        f.close()
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), truncated, timed_out


def _exited_unreaped(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits or ``deadline`` passes, without reaping it (``WNOWAIT``)."""
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def _read_report(fd: int) -> dict | None:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    lines = data.decode("utf-8", "replace").strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


def _verdict(rc: int | None, report: dict | None, nonce: str, timed_out: bool, err: bytes) -> tuple[str, str]:
    if timed_out:
        return "timeout", "wall-time limit"
    if rc == 128 + signal.SIGXCPU:
        return "timeout", "CPU-time limit"
    if rc == SETUP_FAILED and report is None:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        return "error", tail[0]
    if report is None or report.get("nonce") != nonce:
        if rc is not None and rc > 128:
            return "fail", f"killed by signal {rc - 128}"
        return "fail", f"exited with status {rc} before the end of the program"
    if report.get("status") == "ok" and rc == 0:
        return "pass", ""
    if report.get("status") == "exit0":
        return "fail", "sys.exit(0) before the end of the program"
    return "fail", f"{report.get('type', '')}: {report.get('message', '')}"


def run_many(sources: Sequence[str], cfg: SandboxConfig | None = None, progress: bool = False) -> list[SandboxResult]:
    """Run several programs, ``cfg.workers`` at a time; results in input order."""
    cfg = cfg or SandboxConfig()
    resolve_isolation(cfg)  # probe once, before the threads start
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        it = pool.map(lambda s: run_program(s, cfg), sources)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(sources), desc="sandbox", unit="prog")
        return list(it)
