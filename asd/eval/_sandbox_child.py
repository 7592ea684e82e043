"""The child side of :mod:`asd.eval.sandbox`: isolate, drop privileges, run a program or serve a function.

Standalone on purpose (stdlib only, never imports ``asd``): the parent copies it
into the run's work directory and starts ``python -I -S child.py launch`` there,
in a fresh single-threaded interpreter, so the isolation steps happen in our own
code rather than in a ``preexec_fn`` (unsafe when the parent has threads, as the
parallel runner does). Everything it reads is relative to the work directory:
``spec.json`` (limits, environment, ids, descriptors), ``program.py`` (the
untrusted code) and, to serve a function, ``wire.py`` (``_sandbox_wire.py``).

``launch`` (runs as the caller; root here)
    namespaces on (``spec["namespaces"]``):
      1. ``unshare(NEWPID | NEWNET | NEWNS)``: a network namespace whose only
         interface is a downed loopback (no route anywhere) and a private mount tree:
         fresh small tmpfs over the world-writable directories (/tmp, /var/tmp,
         /dev/shm, /run/lock), the work directory bind-mounted at /tmp/work, and
         directories that are closed to other users (/root) covered by an empty
         tmpfs, with only the Python installation bound back, read-only;
      2. fork: PID 1 of the new PID namespace, a root waiter that mounts a fresh
         /proc (it shows only the namespace's own processes), reaps and exits with
         the program's status; when it exits the kernel kills every process left in
         the namespace (fork bombs, daemons) and reaps them before it is gone itself;
         on a wall-time out the parent sends the launcher SIGTERM, the launcher kills
         the init and waits for it, so when the launcher has exited nothing of the run
         is left; the init also dies with the launcher (``PR_SET_PDEATHSIG``);
      3. fork again: the program's process sets resource limits (CPU s, address
         space, file size, processes, open files, no core), drops to the run's own
         random uid/gid (so ``RLIMIT_NPROC`` counts only this run and nothing of
         ours can be written or signalled) and execs ``python -I child.py run``
         (or ``serve``).
    namespaces off: resource limits, then exec ``run`` (``serve``) with the audit-hook fallback.
    A step that fails writes ``{"errno", "message"}`` to the setup descriptor
    (``spec["setup_fd"]``) and exits with ``SETUP_FAILED``. That descriptor is
    close-on-exec: the untrusted code never holds it, so it cannot fake a setup failure.

``run`` (``spec["mode"] == "program"``)
    reads the one-time nonce from stdin, points stdin at /dev/null, installs the
    fallback audit hook when asked, puts the caller's site-packages on ``sys.path`` (the interpreter
    starts with ``-S``: ~40 ms less per run, and no ``.pth`` hooks such as editable installs),
    executes the program with fresh globals and
    writes ``{"nonce", "status"}`` to the result fd; status ``ok`` only when the
    program ran to its end, so ``os._exit(0)`` or ``sys.exit(0)`` halfway never
    reports success (a program that targets this harness can still forge it: see
    docs/sandbox.md; scoring uses ``serve``).

``serve`` (``spec["mode"] == "serve"``)
    the same preparation, then executes the candidate's code, looks up
    ``spec["entry_point"]`` and answers calls: it reads a request (plain-data
    arguments, ``wire.py``) from ``call_fds[0]``, calls the function and writes the
    reply (the plain-data result, the exception's type and message, or why the result
    is not plain data) to ``call_fds[1]``, until the judge closes the request pipe.
    The verdict is the judge's, in another process; nothing written here can make it.

Exit codes of ``launch``: the program's own, 128+signal when a signal killed it,
``SETUP_FAILED`` when isolation could not be set up (verdict ``error``).
"""

import contextlib
import json
import os
import resource
import signal
import sys

SETUP_FAILED = 121
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def _check(ctypes, rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(ctypes, libc, src, dst, fstype, flags, data=None):
    def enc(s):
        return None if s is None else s.encode()

    _check(ctypes, libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {dst}")


def _mounts(ctypes, libc, spec):
    """Private mount tree; see the module docstring. cwd is the work dir on entry."""
    _mount(ctypes, libc, None, "/", None, MS_REC | MS_PRIVATE)
    keep = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in spec["expose"]}
    work_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    for d in spec["hide"]:  # closed directories (e.g. /root): an empty tmpfs, then the kept paths bound back
        _mount(ctypes, libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for d in WORLD_WRITABLE:
        if os.path.isdir(d):
            _mount(ctypes, libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,mode=1777")
    for p, fd in keep.items():
        if any(p == h or p.startswith(h.rstrip("/") + "/") for h in spec["hide"]):
            os.makedirs(p, exist_ok=True)
            _mount(ctypes, libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            _mount(ctypes, libc, None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)
    os.mkdir("/tmp/work", 0o755)
    _mount(ctypes, libc, f"/proc/self/fd/{work_fd}", "/tmp/work", None, MS_BIND)
    os.close(work_fd)
    os.chdir("/tmp/work")


def _limits(spec):
    cpu = max(1, int(spec["cpu_s"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at cpu s, SIGKILL 1 s later
    mem = spec["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = spec["file_size_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (spec["max_files"], spec["max_files"]))
    if spec["uid"] is not None:  # counted per uid: meaningful only with the run's own uid (root is exempt)
        resource.setrlimit(resource.RLIMIT_NPROC, (spec["max_procs"], spec["max_procs"]))


def _exec_run(spec):
    os.set_inheritable(spec["setup_fd"], False)  # closed by the exec: the program never holds it
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    mode = "serve" if spec["mode"] == "serve" else "run"
    os.execve(sys.executable, [sys.executable, "-I", "-S", "child.py", mode], spec["env"])


def _setup_failed(spec, e):
    """Tell the parent why isolation could not be set up (errno and message); return ``SETUP_FAILED``."""
    msg = {"errno": getattr(e, "errno", None), "message": f"{type(e).__name__}: {e}"[:500]}
    with contextlib.suppress(OSError):
        os.write(spec["setup_fd"], (json.dumps(msg) + "\n").encode())
    return SETUP_FAILED


def _status(status):
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def launch():
    with open("spec.json") as f:
        spec = json.load(f)
    if not spec["namespaces"]:
        try:
            _limits(spec)
            _exec_run(spec)
        except OSError as e:
            return _setup_failed(spec, e)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        _check(ctypes, libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS), "unshare")
        _mounts(ctypes, libc, spec)
    except OSError as e:
        return _setup_failed(spec, e)
    spec["env"]["HOME"] = spec["env"]["TMPDIR"] = "/tmp/work"
    init = os.fork()
    if init == 0:  # PID 1 of the new PID namespace: a root waiter
        code = SETUP_FAILED
        try:
            _check(ctypes, libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            # a fresh /proc of this PID namespace: only its own processes, none of the host's
            _mount(ctypes, libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            prog = os.fork()
            if prog == 0:
                try:
                    _limits(spec)
                    _exec_run(spec)
                except BaseException as e:
                    _setup_failed(spec, e)
                os._exit(SETUP_FAILED)
            while True:  # reap orphans until the program itself is done
                pid, status = os.waitpid(-1, 0)
                if pid == prog:
                    code = _status(status)
                    break
        except BaseException as e:
            _setup_failed(spec, e)
        finally:
            os._exit(code)  # the kernel now kills whatever is left in the namespace
    # SIGTERM from the parent (time is up): kill the init; its exit kills and reaps every process of the
    # namespace before it ends, so once waitpid returns nothing of the run is left
    signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
    _, status = os.waitpid(init, 0)
    return _status(status)


_BLOCKED = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "ctypes.dlopen",
    }
)


def _fallback_hook(workdir):
    """Without namespaces: refuse network, processes, signals, ctypes and writes outside ``workdir``."""
    prefix = workdir.rstrip("/") + "/"

    def hook(event, args):
        if event in _BLOCKED:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1] or "r", args[2] or 0
            writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            path = os.path.abspath(os.fsdecode(args[0]))
            if writing and not (path + "/").startswith(prefix):
                raise PermissionError(f"sandbox: writing {path} is not allowed")

    return hook


def _report(fd, msg):
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(msg) + "\n").encode())


def _prepare(spec):
    """stdin from /dev/null, site-packages on the path, the fallback audit hook (without namespaces)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.path.extend(spec["site_packages"])  # third-party packages importable; no .pth processing (-S: fast start)
    if not spec["namespaces"]:
        sys.addaudithook(_fallback_hook(os.getcwd()))


def _flush():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def run():
    with open("spec.json") as f:
        spec = json.load(f)
    with open("program.py") as f:
        source = f.read()
    nonce = sys.stdin.readline().strip()
    fd = spec["result_fd"]
    _prepare(spec)
    del spec
    msg = {"nonce": nonce, "status": "ok"}
    me = os.getpid()
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        msg.update(status="exception", type=type(e).__name__, message=str(e)[:500])
        if isinstance(e, SystemExit) and e.code in (0, None):
            msg["status"] = "exit0"  # sys.exit(0) before the end: not a completed run
    if os.getpid() != me:  # a forked child of the program reached the end: it never speaks for the run
        os._exit(0)
    _flush()
    _report(fd, msg)
    os._exit(0 if msg["status"] == "ok" else 1)


def _exception(e):
    """[type name, message] of an exception raised by the candidate (its ``__str__`` may itself raise)."""
    try:
        message = str(e)[:500]
    except BaseException:
        message = "<message could not be read>"
    return [type(e).__name__, message]


def _answer(wire, fn, msg):
    """The reply to one call request ``msg`` (see the module docstring)."""
    seq = msg["seq"]
    try:
        args = [wire.decode(a) for a in msg["args"]]
        kwargs = {k: wire.decode(v) for k, v in msg["kwargs"]}
    except Exception as e:  # the judge only sends plain data: a bug on our side
        return {"seq": seq, "bad_request": str(e)[:200]}
    try:
        value = fn(*args, **kwargs)
    except BaseException as e:
        reply = {"seq": seq, "raised": _exception(e)}
    else:
        try:
            reply = {"seq": seq, "value": wire.encode(value)}
        except BaseException as e:
            reply = {"seq": seq, "not_plain": str(e)[:300] if isinstance(e, wire.NotPlain) else _exception(e)[0]}
    mutated = []  # arguments the function changed in place (lists, dicts, sets), so the tests see it as in-process
    for key, sent, now in [*zip(range(len(args)), msg["args"], args), *((k, v, kwargs[k]) for k, v in msg["kwargs"])]:
        if type(now) in (list, dict, set):
            with contextlib.suppress(BaseException):
                enc = wire.encode(now)
                if enc != sent:
                    mutated.append([key, enc])
    if mutated:
        reply["mutated"] = mutated
    return reply


def serve():
    with open("spec.json") as f:
        spec = json.load(f)
    with open("program.py") as f:
        source = f.read()
    wire = type(sys)("wire")
    with open("wire.py") as f:
        exec(compile(f.read(), "wire.py", "exec"), wire.__dict__)
    requests, replies = spec["call_fds"]
    entry, max_bytes = spec["entry_point"], spec["message_bytes"]
    _prepare(spec)
    del spec
    me = os.getpid()
    try:
        g = {"__name__": "__candidate__", "__builtins__": __builtins__}
        exec(compile(source, "candidate.py", "exec"), g)
        if entry not in g:
            raise NameError(f"name {entry!r} is not defined")
        fn = g[entry]
        if not callable(fn):
            raise TypeError(f"{entry} is a {type(fn).__name__}, not a function")
    except BaseException as e:
        _flush()
        with contextlib.suppress(BaseException):
            wire.write(replies, {"seq": 0, "raised": _exception(e)})
        os._exit(1)
    wire.write(replies, {"seq": 0, "ready": True})
    while True:
        try:
            msg = wire.read(requests, max_bytes)
        except (OSError, wire.Malformed):
            break
        if msg is None:  # the judge is done
            break
        reply = _answer(wire, fn, msg)
        if os.getpid() != me:  # a forked child of the candidate never answers
            os._exit(0)
        _flush()
        try:
            wire.write(replies, reply)
        except (OSError, ValueError):
            break
    _flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit({"launch": launch, "run": run, "serve": serve}[sys.argv[1]]())
