"""Run model-written Python in a sandbox: limits, isolation, verdicts.

Two kinds of job, each in a fresh sandboxed subprocess, each ending in one of four verdicts
(``pass``, ``fail``, ``timeout``, ``error``; the table is in docs/sandbox.md):

- ``run_check(FunctionCheck(code, entry_point, test, setup), cfg)``: what scoring uses. The
  candidate's ``code`` runs in the sandboxed child, which serves its function ``entry_point``
  over a pipe; the ``test`` (a ``check(candidate)``) runs in a separate *judge* process that
  the candidate's code never runs in, against a proxy that forwards each call and gets back
  plain data only (``_sandbox_wire``). ``pass`` means ``check`` returned; nothing the candidate
  does in its own process (patched builtins, always-equal objects, trace hooks, forged
  messages on any descriptor) can make that happen.
- ``run_program(source, cfg)``: a whole program; ``pass`` when it ran to its last line (exit 0
  and the one-time nonce came back on the result pipe). A program aimed at this harness can
  forge that (it runs in the process that reports), so no score is taken this way.

Isolation (details and the hostile cases tested in docs/sandbox.md):

- ``namespaces`` (root, where ``unshare`` is permitted): new PID, network and mount
  namespaces with a fresh /proc, the run's own random uid/gid, private tmpfs over /tmp,
  /var/tmp, /dev/shm and /run/lock, closed directories such as /root hidden, the work dir at
  /tmp/work;
- ``audit``: a ``sys.addaudithook`` in the child refuses sockets, process creation, signals,
  ctypes and writes outside the work dir. Weaker: an audit hook is Python-level.

``isolation: auto`` probes once per process (:func:`probe_isolation`) and falls back to
``audit`` only for a real lack of permission (not root, ``EPERM``/``EACCES``/``ENOSYS``);
a probe that runs out of time is retried with more time and then raises
:class:`IsolationUnavailable`, never read as "no namespaces". ``isolation: namespaces``
never falls back. Every result records the isolation it ran under (``isolation``);
:func:`isolation_status` is the run-level record (mode used, why).

Both: ``setrlimit`` on CPU seconds, address space, file size, process count (per uid,
namespaces mode), open files, no core files; a fresh temporary directory as cwd, HOME and
TMPDIR, removed afterwards; an environment built from scratch (no secrets); stdin from
/dev/null; stdout and stderr captured up to ``output_bytes`` each and drained beyond that.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from asd.config_loader import check_fields

CHILD = Path(__file__).with_name("_sandbox_child.py")
JUDGE = Path(__file__).with_name("_sandbox_judge.py")
WIRE = Path(__file__).with_name("_sandbox_wire.py")
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
JUDGE_OUTPUT_BYTES = 65536  # the judge's own stdout+stderr kept (its error messages)
PROBE_WALL_S = (15.0, 60.0, 180.0)  # the namespaces probe's tries: wall seconds each
TEARDOWN_S = 10.0  # at most this long for a namespace's processes to be gone after the time is up
NO_PERMISSION = {errno.EPERM: "EPERM", errno.EACCES: "EACCES", errno.ENOSYS: "ENOSYS"}


@dataclass
class SandboxConfig:
    """Limits of one sandboxed run — ``configs/evaluation.yaml`` section ``sandbox``."""

    wall_s: float = 10.0  # wall-clock seconds before the process tree is killed (verdict timeout)
    cpu_s: float = 10.0  # CPU seconds (RLIMIT_CPU, rounded up to whole seconds): the candidate's, and the tests'
    memory_mb: int = 1024  # address space, MiB (RLIMIT_AS)
    file_size_mb: int = 16  # largest file the program may write, MiB (RLIMIT_FSIZE)
    max_procs: int = 32  # processes and threads of the run's uid (RLIMIT_NPROC; namespaces mode)
    max_files: int = 64  # open file descriptors (RLIMIT_NOFILE)
    tmpfs_mb: int = 16  # size of each private tmpfs (namespaces mode)
    output_bytes: int = 65536  # stdout and stderr each kept up to this many bytes
    message_mb: int = 16  # largest call or reply between the tests and the candidate's function, MiB
    # auto: namespaces, else audit only where namespaces are not permitted; namespaces: required, never falls back
    isolation: Literal["auto", "namespaces", "audit"] = "auto"
    workers: int = 2  # parallel runs in run_many

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        for name in ("wall_s", "cpu_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        ints = ("memory_mb", "file_size_mb", "max_procs", "max_files", "tmpfs_mb", "output_bytes", "message_mb")
        for name in (*ints, "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.isolation not in ("auto", "namespaces", "audit"):
            raise ValueError(f"isolation must be one of auto, namespaces, audit; got {self.isolation!r}")


@dataclass(frozen=True)
class FunctionCheck:
    """One function to test: the candidate's code (untrusted, runs only in the sandbox) and the tests (trusted)."""

    code: str  # defines entry_point (e.g. a HumanEval prompt + completion)
    entry_point: str  # the function's name
    test: str  # defines check(candidate); runs in the judge process
    setup: str = ""  # trusted code the tests rely on, run in the judge first (HumanEval: the prompt's imports, helpers)


@dataclass
class SandboxResult:
    verdict: str  # one of VERDICTS
    detail: str  # why: exception type and message, signal, limit
    returncode: int | None  # exit status of the launcher (128+signal when killed by one)
    stdout: str  # first output_bytes of the candidate's stdout (utf-8, errors replaced)
    stderr: str
    truncated: bool  # stdout or stderr was longer than output_bytes
    wall_s: float  # seconds from start to verdict
    isolation: str  # "namespaces" or "audit": what this run actually ran under
    uid: int | None = None  # the run's own uid (namespaces mode): nothing may be left running under it
    errno: int | None = None  # verdict error from a failed setup step: its errno (None otherwise)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


# ---- isolation: probe once, fall back only for lack of permission -----------------------------------------


class IsolationUnavailable(RuntimeError):
    """Namespaces were required but are not permitted, or the probe could not conclude (overload, a bug)."""


@dataclass(frozen=True)
class IsolationProbe:
    mode: str  # "namespaces" or "audit"
    reason: str  # why not namespaces ("" when namespaces)


_probe_lock = threading.Lock()
_probe_result: IsolationProbe | None = None


def probe_isolation() -> IsolationProbe:
    """Whether this process may sandbox with namespaces (a real ``pass`` run in namespaces mode; once per process).

    ``audit`` only for a real lack of permission; a probe that times out is retried with more
    time (``PROBE_WALL_S``), then :class:`IsolationUnavailable` is raised (and nothing cached).
    """
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe()
        return _probe_result


def _probe() -> IsolationProbe:
    if not sys.platform.startswith("linux"):
        return IsolationProbe("audit", f"namespaces need Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        return IsolationProbe("audit", f"namespaces need root here (euid {os.geteuid()})")
    tries = []
    for wall in PROBE_WALL_S:
        r = _run("pass\n", SandboxConfig(wall_s=wall, cpu_s=10, isolation="namespaces"), "namespaces")
        if r.verdict == "pass":
            return IsolationProbe("namespaces", "")
        if r.verdict == "error" and r.errno in NO_PERMISSION:
            return IsolationProbe("audit", f"{r.detail} ({NO_PERMISSION[r.errno]})")
        if r.verdict != "timeout":
            raise IsolationUnavailable(
                f"sandbox: the namespaces probe ended in {r.verdict} ({r.detail}), not a lack of permission; "
                "set sandbox.isolation to 'audit' to run without namespaces"
            )
        tries.append(f"{wall:g} s")
    raise IsolationUnavailable(
        f"sandbox: the namespaces probe ran out of time in every try ({', '.join(tries)}: machine overloaded?); "
        "not taken as 'no namespaces'. Retry, or set sandbox.isolation explicitly"
    )


def namespaces_available() -> bool:
    """Whether runs here get namespaces (:func:`probe_isolation`; raises when the probe cannot conclude)."""
    return probe_isolation().mode == "namespaces"


def resolve_isolation(cfg: SandboxConfig) -> str:
    """The isolation runs with ``cfg`` get; ``IsolationUnavailable`` when ``namespaces`` is required and absent."""
    if cfg.isolation == "audit":
        return "audit"
    probe = probe_isolation()
    if probe.mode == "namespaces":
        return "namespaces"
    if cfg.isolation == "namespaces":
        raise IsolationUnavailable(
            f"sandbox.isolation is 'namespaces' (required), but namespaces are not permitted here: {probe.reason}; "
            "use 'auto' to allow the audit-hook fallback, or 'audit'"
        )
    _warn_fallback(probe.reason)
    return "audit"


def isolation_status(cfg: SandboxConfig) -> dict:
    """The run-level record for reports: requested mode, mode used, and why not namespaces (or None)."""
    used = resolve_isolation(cfg)
    reason = None
    if used == "audit":
        reason = "requested (sandbox.isolation: audit)" if cfg.isolation == "audit" else probe_isolation().reason
    return {"requested": cfg.isolation, "used": used, "fallback_reason": reason}


@lru_cache(maxsize=1)
def _warn_fallback(reason: str) -> None:
    warnings.warn(
        f"sandbox: namespaces are not permitted here ({reason}); running generated code with the weaker "
        "audit-hook isolation (recorded as isolation='audit' in every result; docs/sandbox.md)",
        RuntimeWarning,
        stacklevel=3,
    )


# ---- one run ---------------------------------------------------------------------------------------------


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


def _spec(cfg: SandboxConfig, isolation: str, workdir: str, fds: dict) -> dict:
    ns = isolation == "namespaces"
    uid = secrets.randbelow(2**30) + 2**20 if ns else None  # the run's own ids, unused by anything else
    expose = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)})
    env = dict(SAFE_ENV, HOME=workdir, TMPDIR=workdir)
    return {
        "namespaces": ns,
        "uid": uid,
        "gid": uid,
        "env": env,
        "expose": expose,
        "hide": _closed_ancestors(expose) if ns else [],
        "site_packages": [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))],
        "cpu_s": cfg.cpu_s,
        "memory_mb": cfg.memory_mb,
        "file_size_mb": cfg.file_size_mb,
        "max_procs": cfg.max_procs,
        "max_files": cfg.max_files,
        "tmpfs_mb": cfg.tmpfs_mb,
        "message_bytes": cfg.message_mb << 20,
        **fds,
    }


def run_program(source: str, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run the Python program ``source`` in the sandbox (verdict: it ran to its end; see the module docstring)."""
    cfg = cfg or SandboxConfig()
    return _run(source, cfg, resolve_isolation(cfg))


def run_check(job: FunctionCheck, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Test the candidate's function in the sandbox from the judge process (see the module docstring)."""
    cfg = cfg or SandboxConfig()
    return _run(job, cfg, resolve_isolation(cfg))


def run_many(
    jobs: Sequence[str | FunctionCheck], cfg: SandboxConfig | None = None, progress: bool = False
) -> list[SandboxResult]:
    """Run several programs or function checks, ``cfg.workers`` at a time; results in input order."""
    cfg = cfg or SandboxConfig()
    isolation = resolve_isolation(cfg)  # probe once, before the threads start
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        it = pool.map(lambda j: _run(j, cfg, isolation), jobs)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(jobs), desc="sandbox", unit="job")
        return list(it)


def _run(job: str | FunctionCheck, cfg: SandboxConfig, isolation: str) -> SandboxResult:
    t0 = time.monotonic()
    serve = isinstance(job, FunctionCheck)
    workdir = tempfile.mkdtemp(prefix="asd-sandbox-")
    judge_dir = tempfile.mkdtemp(prefix="asd-judge-")  # the judge's cwd (unused in program mode)
    mine: list[int] = []  # descriptors this process still holds

    def pipe() -> tuple[int, int]:
        r, w = os.pipe()
        mine.extend((r, w))
        return r, w

    def give(*fds: int) -> None:
        for fd in fds:
            mine.remove(fd)
            os.close(fd)

    setup_r, setup_w = pipe()  # setup failures of the launcher, the namespace init and the program's process
    fds: dict = {"setup_fd": setup_w, "mode": "serve" if serve else "program"}
    if serve:
        assert isinstance(job, FunctionCheck)
        req_r, req_w = pipe()  # judge -> child: calls
        rep_r, rep_w = pipe()  # child -> judge: replies
        rpt_r, rpt_w = pipe()  # judge -> us: the verdict
        fds.update(call_fds=[req_r, rep_w], entry_point=job.entry_point)
        child_fds: tuple[int, ...] = (setup_w, req_r, rep_w)
        judge_fds: tuple[int, ...] = (req_w, rep_r, rpt_w)
    else:
        res_r, res_w = pipe()  # child -> us: {"nonce", "status"}
        fds.update(result_fd=res_w)
        child_fds, judge_fds = (setup_w, res_w), ()
    nonce = secrets.token_hex(16)
    spec: dict = {"uid": None}
    child = judge = None
    try:
        try:
            spec = _spec(cfg, isolation, workdir, fds)
            (Path(workdir) / "spec.json").write_text(json.dumps(spec))
            (Path(workdir) / "program.py").write_text(job.code if isinstance(job, FunctionCheck) else job)
            shutil.copyfile(CHILD, Path(workdir) / "child.py")
            if serve:
                shutil.copyfile(WIRE, Path(workdir) / "wire.py")
            if spec["uid"] is not None:
                os.chown(workdir, spec["uid"], spec["gid"])
            os.chmod(workdir, 0o755)
            child = subprocess.Popen(
                [sys.executable, "-I", "-S", "child.py", "launch"],
                cwd=workdir,
                env=spec["env"],
                stdin=subprocess.DEVNULL if serve else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=child_fds,
                start_new_session=True,
            )
            give(*child_fds)
            if serve:
                judge = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(JUDGE)],
                    cwd=judge_dir,
                    env=dict(SAFE_ENV, HOME=judge_dir, TMPDIR=judge_dir),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=judge_fds,
                    start_new_session=True,
                )
                give(*judge_fds)
                _send(judge, _judge_job(job, cfg, req_w, rep_r, rpt_w))  # type: ignore[arg-type]
            else:
                _send(child, nonce.encode() + b"\n")
        except OSError as e:
            for p in (child, judge):
                if p is not None:
                    _kill_group(p)
                    p.wait()
            return SandboxResult(
                "error", f"could not start: {e}", None, "", "", False, time.monotonic() - t0, isolation
            )
        assert child is not None
        if serve:
            assert judge is not None
            res = _supervise_check(child, judge, cfg, isolation, t0, rpt_r, setup_r)
        else:
            res = _supervise_program(child, cfg, isolation, t0, res_r, setup_r, nonce)
        res.uid = spec["uid"]
        return res
    finally:
        for fd in mine:
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(judge_dir, ignore_errors=True)


def _judge_job(job: FunctionCheck, cfg: SandboxConfig, req_w: int, rep_r: int, rpt_w: int) -> bytes:
    return json.dumps(
        {
            "setup": job.setup,
            "test": job.test,
            "entry_point": job.entry_point,
            "call_fds": [req_w, rep_r],
            "report_fd": rpt_w,
            "cpu_s": cfg.cpu_s,
            "memory_mb": cfg.memory_mb,
            "file_size_mb": cfg.file_size_mb,
            "max_files": cfg.max_files,
            "message_bytes": cfg.message_mb << 20,
        }
    ).encode()


def _send(proc: subprocess.Popen, data: bytes) -> None:
    try:
        proc.stdin.write(data)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except OSError:
        pass  # it ended already: its exit status tells


# ---- supervision -----------------------------------------------------------------------------------------


class _Streams:
    """Non-blocking reads of several pipes into capped buffers (what goes beyond a cap is read and dropped)."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.bufs: dict[str, bytearray] = {}
        self.caps: dict[str, int] = {}
        self.truncated: set[str] = set()

    def add(self, name: str, fd: int, cap: int) -> None:
        os.set_blocking(fd, False)
        self.bufs[name], self.caps[name] = bytearray(), cap
        self.sel.register(fd, selectors.EVENT_READ, name)

    def open(self, *names: str) -> bool:
        return any(key.data in names for key in self.sel.get_map().values())

    def pump(self, until: float, done) -> bool:
        """Read until ``done()`` (True) or the clock passes ``until`` (False)."""
        while not done():
            left = until - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self.sel.select(timeout=min(left, 0.5)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.sel.unregister(key.fd)
                    continue
                buf, room = self.bufs[key.data], self.caps[key.data] - len(self.bufs[key.data])
                if len(chunk) > room:
                    self.truncated.add(key.data)
                if room > 0:
                    buf += chunk[:room]
        return True

    def text(self, name: str) -> str:
        return bytes(self.bufs[name]).decode("utf-8", "replace")

    def close(self) -> None:
        self.sel.close()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process group we started (``start_new_session``): launcher, namespace init, program; or judge."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _exited_unreaped(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits or ``deadline`` passes, without reaping it (``WNOWAIT``)."""
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def _end(proc: subprocess.Popen, wait_until: float, namespaces: bool = False) -> tuple[bool, int]:
    """Let ``proc`` exit until ``wait_until``, then end it and what is left of its group, and reap it.

    A namespaces launcher still running gets SIGTERM first: it kills the namespace's init and waits
    for it, which returns only when every process of the namespace is gone (up to ``TEARDOWN_S``).
    Then SIGKILL to the group, sent while ``proc`` is unreaped (a zombie at worst), so its pid, the
    group id, cannot have been reused. Returns (exited on its own, exit status, 128+signal for a signal).
    """
    exited = _exited_unreaped(proc.pid, wait_until)
    if not exited and namespaces:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        _exited_unreaped(proc.pid, time.monotonic() + TEARDOWN_S)
    _kill_group(proc)
    rc = proc.wait()
    return exited, 128 - rc if rc < 0 else rc


def _setup_failure(fd: int) -> dict | None:
    """The first setup failure the launcher side wrote (``{"errno", "message"}``), if any."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    for line in data.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict) and isinstance(msg.get("message"), str):
                return msg
    return None


def _setup_error(setup: dict, out: _Streams, t0: float, isolation: str, rc: int | None) -> SandboxResult:
    e = setup.get("errno")
    return SandboxResult(
        "error",
        f"sandbox setup failed: {setup['message']}",
        rc,
        out.text("stdout"),
        out.text("stderr"),
        False,
        time.monotonic() - t0,
        isolation,
        errno=e if isinstance(e, int) else None,
    )


def _supervise_program(
    proc: subprocess.Popen, cfg: SandboxConfig, isolation: str, t0: float, res_r: int, setup_r: int, nonce: str
) -> SandboxResult:
    out = _Streams()
    out.add("stdout", proc.stdout.fileno(), cfg.output_bytes)  # type: ignore[union-attr]
    out.add("stderr", proc.stderr.fileno(), cfg.output_bytes)  # type: ignore[union-attr]
    deadline = t0 + cfg.wall_s
    finished = out.pump(deadline, lambda: not out.open("stdout", "stderr"))
    exited, rc = _end(proc, deadline if finished else time.monotonic(), isolation == "namespaces")
    out.close()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    setup = _setup_failure(setup_r)
    if setup is not None and finished:
        return _setup_error(setup, out, t0, isolation, rc)
    report = _read_report(res_r, nonce)
    verdict, detail = _program_verdict(rc, report, not (finished and exited))
    return SandboxResult(
        verdict,
        detail,
        rc,
        out.text("stdout"),
        out.text("stderr"),
        bool(out.truncated),
        time.monotonic() - t0,
        isolation,
    )


def _read_report(fd: int, nonce: str) -> dict | None:
    """The last report on the result pipe that carries the nonce (other lines, junk included, are ignored)."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    found = None
    for line in data.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict) and msg.get("nonce") == nonce:
                found = msg
    return found


def _program_verdict(rc: int, report: dict | None, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return "timeout", "wall-time limit"
    if rc == 128 + signal.SIGXCPU:
        return "timeout", "CPU-time limit"
    if report is None:
        if rc > 128:
            return "fail", f"killed by signal {rc - 128}"
        return "fail", f"exited with status {rc} before the end of the program"
    if report.get("status") == "ok" and rc == 0:
        return "pass", ""
    if report.get("status") == "exit0":
        return "fail", "sys.exit(0) before the end of the program"
    return "fail", f"{report.get('type', '')}: {report.get('message', '')}"


def _supervise_check(
    child: subprocess.Popen,
    judge: subprocess.Popen,
    cfg: SandboxConfig,
    isolation: str,
    t0: float,
    rpt_r: int,
    setup_r: int,
) -> SandboxResult:
    out = _Streams()
    out.add("stdout", child.stdout.fileno(), cfg.output_bytes)  # type: ignore[union-attr]
    out.add("stderr", child.stderr.fileno(), cfg.output_bytes)  # type: ignore[union-attr]
    out.add("judge", judge.stdout.fileno(), JUDGE_OUTPUT_BYTES)  # type: ignore[union-attr]
    out.add("report", rpt_r, 1 << 20)
    deadline = t0 + cfg.wall_s
    finished = out.pump(deadline, lambda: not out.open("judge", "report"))
    judge_exited, judge_rc = _end(judge, deadline if finished else time.monotonic())
    report = None
    with contextlib.suppress(ValueError, IndexError):
        report = json.loads(out.text("report").strip().splitlines()[-1])
    if finished and judge_exited and isinstance(report, dict) and report.get("gone"):
        # the candidate's process ended during a call: let it finish, for its exit status (a CPU limit, a signal)
        child_exited, rc = _end(child, min(deadline, time.monotonic() + 5.0), isolation == "namespaces")
    else:  # the judge closed the request pipe: an idle child ends by itself at once; a busy one is ended now
        idle = finished and isinstance(report, dict) and not report.get("broken")
        wait = min(deadline, time.monotonic() + 1.0) if idle else time.monotonic()
        child_exited, rc = _end(child, wait, isolation == "namespaces")
    out.pump(time.monotonic() + 1.0, lambda: not out.open("stdout", "stderr"))  # what it wrote before the end
    out.close()
    for f in (child.stdout, child.stderr, judge.stdout):
        f.close()  # type: ignore[union-attr]
    timed_out = not (finished and judge_exited)
    setup = _setup_failure(setup_r)
    if setup is not None and not timed_out:
        return _setup_error(setup, out, t0, isolation, rc)
    verdict, detail = _check_verdict(timed_out, report, judge_rc, out.text("judge"), rc if child_exited else None)
    return SandboxResult(
        verdict,
        detail,
        rc,
        out.text("stdout"),
        out.text("stderr"),
        bool(out.truncated & {"stdout", "stderr"}),
        time.monotonic() - t0,
        isolation,
    )


def _check_verdict(
    timed_out: bool, report: object, judge_rc: int, judge_out: str, child_rc: int | None
) -> tuple[str, str]:
    if timed_out:
        return "timeout", "wall-time limit"
    if judge_rc == 128 + signal.SIGXCPU:
        return "timeout", "CPU-time limit (in the tests)"
    if not (isinstance(report, dict) and report.get("status") in VERDICTS and isinstance(report.get("detail"), str)):
        tail = judge_out.strip().splitlines()[-1:] or ["no output"]
        return "error", f"the judge ended without a verdict (status {judge_rc}): {tail[0][:300]}"
    status, detail = report["status"], report["detail"]
    if status == "fail" and report.get("gone") and child_rc is not None:
        if child_rc == 128 + signal.SIGXCPU:
            return "timeout", "CPU-time limit"
        if child_rc > 128:
            return "fail", f"killed by signal {child_rc - 128} ({detail})"
        return "fail", f"{detail}, exit status {child_rc}"
    return status, detail
