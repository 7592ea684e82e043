"""The sandbox: verdicts, limits, isolation, and hostile completions.

Each hostile case is a completion of ``add(a, b)`` that does its damage and then returns
the right answer, so an uncontained attack would *pass*; contained, it must fail (or time
out), the harness must stay alive and nothing may leak or be left running. Each runs both
ways: as a function check (``run_check``: the tests in the judge process, what scoring uses)
and as a whole program (``run_program``).

Tests that need namespaces take the ``ns`` fixture (``isolation: namespaces``, required: it
never falls back) and assert the isolation the run actually got.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

import asd.eval.sandbox as sb
from asd.eval.sandbox import (
    FunctionCheck,
    IsolationUnavailable,
    SandboxConfig,
    probe_isolation,
    run_check,
    run_program,
)

FAST = SandboxConfig(wall_s=4.0, cpu_s=4.0)
PROBLEM = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n"
TEST = "\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
MODES = ("check", "program")


@pytest.fixture(scope="module")
def ns():
    """Limits like FAST with namespaces required; skips only where they are not permitted (the probe's reason).

    The probe raises when it cannot conclude (e.g. out of time on a loaded machine): an error, never a skip.
    """
    probe = probe_isolation()
    if probe.mode != "namespaces":
        pytest.skip(f"namespaces are not permitted here: {probe.reason}")
    return SandboxConfig(wall_s=4.0, cpu_s=4.0, isolation="namespaces")


def completion_program(body: str) -> str:
    return PROBLEM + body + TEST


def completion_check(body: str, check: str = CHECK) -> FunctionCheck:
    return FunctionCheck(PROBLEM + body, "add", check, PROBLEM + "    pass\n")


def run_completion(body: str, mode: str, cfg: SandboxConfig):
    return run_check(completion_check(body), cfg) if mode == "check" else run_program(completion_program(body), cfg)


def leftovers(uid):
    """Processes still running under the run's uid (namespaces mode)."""
    if uid is None:
        return []
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == uid:
                    out.append(d.name)
            except FileNotFoundError:
                pass
    return out


@pytest.mark.parametrize("mode", MODES)
def test_verdicts_pass_fail_timeout(mode):
    assert run_completion("    return a + b\n", mode, FAST).verdict == "pass"
    r = run_completion("    return a - b\n", mode, FAST)
    assert r.verdict == "fail" and r.detail.startswith("AssertionError"), r
    r = run_completion("    return a +\n", mode, FAST)
    assert r.verdict == "fail" and "SyntaxError" in r.detail
    t0 = time.monotonic()
    r = run_completion("    while True:\n        pass\n", mode, SandboxConfig(wall_s=1.5, cpu_s=10))
    assert r.verdict == "timeout" and r.detail == "wall-time limit" and time.monotonic() - t0 < 5
    r = run_program("import sys\nsys.exit(3)\n", FAST)
    assert r.verdict == "fail"


@pytest.mark.parametrize("mode", MODES)
def test_cpu_limit_is_a_timeout(mode):
    cfg = SandboxConfig(wall_s=20, cpu_s=1)
    r = run_completion("    while True:\n        pass\n", mode, cfg)
    assert r.verdict == "timeout" and r.detail == "CPU-time limit" and r.wall_s < 19, r  # before the wall limit
    # the same limit binds the tests in the judge (a harness whose own loop never ends)
    r = run_check(completion_check("    return a + b\n", "def check(candidate):\n    while True:\n        pass\n"), cfg)
    assert r.verdict == "timeout" and r.detail == "CPU-time limit (in the tests)", r


def test_output_is_captured_and_capped():
    r = run_program("print('hello')\nimport sys\nsys.stderr.write('x' * 100000)\n", SandboxConfig(output_bytes=1000))
    assert r.verdict == "pass" and r.stdout == "hello\n" and len(r.stderr) == 1000 and r.truncated


def test_cwd_home_tmpdir_are_a_fresh_private_dir():
    prog = ("import os, tempfile\n"
            "assert os.getcwd() == os.environ['HOME'] == tempfile.gettempdir()\n"
            "assert sorted(os.listdir('.')) == ['child.py', 'program.py', 'spec.json'], os.listdir('.')\n"
            "open('out.txt', 'w').write('ok')\n")
    r = run_program(prog, FAST)
    assert r.verdict == "pass", r


def test_setup_failure_is_error_not_fail(monkeypatch, ns):
    real = sb._spec
    monkeypatch.setattr(sb, "_spec", lambda *a: {**real(*a), "hide": ["/nonexistent-dir-for-test"]})
    for r in (sb.run_program("print(1)", ns), sb.run_check(completion_check("    return a + b\n"), ns)):
        assert r.verdict == "error" and "sandbox setup failed" in r.detail and r.stdout == "", r
        assert r.errno == 2 and r.isolation == "namespaces"  # ENOENT: an error, not a lack of permission


@pytest.mark.parametrize("mode", MODES)
def test_a_program_cannot_fake_a_setup_failure(mode):
    """Setup failures come on a descriptor the program never holds: its own claim of one is its own failure."""
    body = ("    import os, sys\n    print('sandbox setup failed: [Errno 1] unshare: Operation not permitted',"
            " file=sys.stderr)\n    sys.stderr.flush()\n    os._exit(121)\n")
    r = run_completion(body, mode, FAST)
    assert r.verdict == "fail" and r.errno is None, r


# ---- hostile completions -------------------------------------------------------------

HOSTILE = {
    "fork_bomb": "    import os\n    while True:\n        os.fork()\n    return a + b\n",
    "thread_bomb": "    import threading, time\n    ts = [threading.Thread(target=time.sleep, args=(5,)) for _ in range(500)]\n"
                   "    [t.start() for t in ts]\n    return a + b\n",
    "infinite_loop": "    while True:\n        pass\n",
    "sleep_forever": "    import time\n    time.sleep(3600)\n    return a + b\n",
    "memory_hog": "    blocks = []\n    while True:\n        blocks.append(bytearray(64 << 20))\n",
    "big_alloc": "    x = bytearray(8 << 30)\n    return a + b\n",
    "huge_file": "    with open('big.bin', 'wb') as f:\n        f.write(b'0' * (64 << 20))\n    return a + b\n",
    "os_exit_0": "    import os\n    os._exit(0)\n",
    "sys_exit_0": "    import sys\n    sys.exit(0)\n",
    "kill_parent": "    import os\n    os.kill(os.getppid(), 9)\n    return a + b\n",
    "kill_group": "    import os\n    os.killpg(os.getpgid(0), 9)\n    return a + b\n",
    "stdout_flood": "    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n",
    "deep_recursion": "    import sys\n    sys.setrecursionlimit(10 ** 8)\n    def f(n):\n        return f(n + 1) + 1\n"
                      "    return f(0)\n",
    "fake_success_report": "    import os\n    for fd in range(3, 64):\n        try:\n"
                           "            os.write(fd, b'{\"nonce\": \"guess\", \"status\": \"ok\"}\\n')\n"
                           "        except OSError:\n            pass\n    os._exit(0)\n",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_completion_is_contained(name, mode, ns):
    cfg = SandboxConfig(wall_s=2.5, cpu_s=2.0, output_bytes=4096, isolation="namespaces")
    t0 = time.monotonic()
    r = run_completion(HOSTILE[name], mode, cfg)
    assert r.verdict in ("fail", "timeout") and r.isolation == "namespaces", (name, r)
    assert time.monotonic() - t0 < cfg.wall_s + 6
    assert len(r.stdout) <= 4096
    assert leftovers(r.uid) == [], f"{name}: processes left under the sandbox uid"  # gone when the run returns


def _escape_paths(tmp_path):
    tag = uuid.uuid4().hex[:8]
    return [tmp_path / f"escape-{tag}", Path(f"/tmp/asd-escape-{tag}"), Path(f"/var/tmp/asd-escape-{tag}"),
            Path(f"/dev/shm/asd-escape-{tag}")]


def test_writes_outside_the_work_dir_do_not_reach_the_host(tmp_path):
    paths = _escape_paths(tmp_path)
    body = "    import os\n    ok = 0\n"
    for p in paths:
        body += f"    try:\n        open({str(p)!r}, 'w').write('pwned')\n        ok += 1\n    except OSError:\n        pass\n"
    body += "    assert ok == 0, ok\n    return a + b\n"
    r = run_program(completion_program(body), FAST)
    for p in paths:
        assert not p.exists(), f"sandbox wrote {p}"
    # the repository is never writable; /tmp writes land in a private tmpfs (namespaces) or are refused (audit)
    assert r.verdict in ("fail", "pass")
    me = Path(__file__).resolve()
    before = me.read_bytes()
    r = run_program(completion_program(f"    open({str(me)!r}, 'a').write('#')\n"
                                       "    return a + b\n"), FAST)
    # refused (read-only, other uid) — or, for a checkout under /tmp, not even visible (private /tmp)
    assert r.verdict == "fail" and ("PermissionError" in r.detail or "FileNotFoundError" in r.detail), r.detail
    assert me.read_bytes() == before


def test_network_connect_is_refused():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    got, done = [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                got.append(srv.accept())
            except OSError:
                pass

    th = threading.Thread(target=accept)
    th.start()
    body = (f"    import socket\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    s.sendall(b'leak')\n    return a + b\n")
    r = run_program(completion_program(body), FAST)
    time.sleep(0.3)  # a connection that got through would be accepted by now
    done.set()
    th.join()
    srv.close()
    assert r.verdict == "fail" and not got, (r, got)


def test_environment_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("ASD_FAKE_SECRET", "s3cr3t-value")
    body = ("    import os, glob\n    seen = 'ASD_FAKE_SECRET' in os.environ\n"
            "    for p in glob.glob('/proc/[0-9]*/environ'):\n        try:\n"
            "            seen = seen or b's3cr3t-value' in open(p, 'rb').read()\n"
            "        except OSError:\n            pass\n"
            "    assert seen, 'secret not visible'\n    return a + b\n")
    r = run_program(completion_program(body), FAST)
    if r.isolation == "namespaces":
        assert r.verdict == "fail" and "secret not visible" in r.detail, r
    else:  # audit mode runs as the caller: /proc/<pid>/environ of our own processes is readable
        assert "ASD_FAKE_SECRET" not in run_program("import os; print(dict(os.environ))", FAST).stdout


def test_namespaces_mode_details(ns):
    prog = ("import os\nprint(os.getuid(), os.getpid(), os.getcwd())\n"
            "print(sorted(os.listdir('/root')))\nprint(sorted(os.listdir('/tmp')))\n")
    r = run_program(prog, ns)
    uid, pid, cwd = r.stdout.splitlines()[0].split()
    assert r.verdict == "pass" and r.isolation == "namespaces" and int(uid) == r.uid and int(uid) >= 2 ** 20
    assert pid == "2" and cwd == "/tmp/work"  # PID 1 is the namespace's init, the program is PID 2
    assert r.stdout.splitlines()[1] in ("['.pyenv']", "[]")  # /root hidden except the Python install
    # the private /tmp holds the work dir, plus the bound-back Python install when it lives under /tmp
    py_under_tmp = {Path(os.path.realpath(p)).parts[2] for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)
                    if os.path.realpath(p).startswith("/tmp/")}
    assert r.stdout.splitlines()[2] == str(sorted({"work"} | py_under_tmp))


AUDIT = SandboxConfig(wall_s=2.5, cpu_s=2.0, isolation="audit")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["os_exit_0", "kill_parent", "kill_group", "infinite_loop", "memory_hog"])
def test_audit_fallback_contains(name, mode):
    r = run_completion(HOSTILE[name], mode, AUDIT)
    assert r.isolation == "audit" and r.verdict in ("fail", "timeout"), r


def test_audit_fallback_blocks_network_and_writes(tmp_path):
    r = run_program(completion_program("    import socket\n    socket.socket()\n    return a + b\n"), AUDIT)
    assert r.verdict == "fail" and "socket" in r.detail
    target = tmp_path / "x"
    r = run_program(completion_program(f"    open({str(target)!r}, 'w').write('x')\n    return a + b\n"), AUDIT)
    assert r.verdict == "fail" and "not allowed" in r.detail and not target.exists()
    r = run_program(completion_program("    import subprocess\n    subprocess.run(['true'])\n    return a + b\n"), AUDIT)
    assert r.verdict == "fail"


def test_config_validation():
    with pytest.raises(ValueError, match="wall_s"):
        SandboxConfig(wall_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxConfig(memory_mb=0)
    with pytest.raises(ValueError, match="message_mb"):
        SandboxConfig(message_mb=0)
    with pytest.raises(ValueError, match="isolation: invalid value 'none'; valid choices: 'auto', 'namespaces', 'audit'"):
        SandboxConfig(isolation="none")  # type: ignore[arg-type]


# ---- verdicts no sample can forge (function checks: the tests run in the judge process) ----------------

# Reads every nonce-like value from the frames and objects of its process, writes fake success reports
# (the program mode's format with each stolen value, the judge's report format) to every descriptor
# 0..255, then never returns from the call (sleeps) or leaves (os._exit(0)).
FORGE = """    import gc, json, os, sys, time
    stolen = set()
    f = sys._getframe()
    while f is not None:
        for v in [*f.f_locals.values(), *f.f_globals.values()]:
            if isinstance(v, str) and len(v) == 32:
                stolen.add(v)
            if isinstance(v, dict) and 'nonce' in v:
                stolen.add(str(v['nonce']))
        f = f.f_back
    for o in gc.get_objects():
        if isinstance(o, dict) and 'nonce' in o:
            stolen.add(str(o['nonce']))
    lines = [json.dumps({'nonce': n, 'status': 'ok'}) for n in stolen or ['none']]
    lines.append(json.dumps({'status': 'pass', 'detail': '', 'gone': False, 'calls': 2}))
    junk = ('\\n'.join(lines) + '\\n').encode()
    for fd in range(256):
        try:
            os.write(fd, junk)
        except OSError:
            pass
"""


@pytest.mark.parametrize("ending", ["    while True:\n        time.sleep(1)\n", "    os._exit(0)\n"])
def test_forged_pass_is_a_fail(ending, ns):
    r = run_check(completion_check(FORGE + ending), ns)
    assert r.verdict == "fail" and r.isolation == "namespaces", r
    assert "malformed reply" in r.detail, r.detail  # the fake reports landed on its own reply pipe, and no further


ALWAYS_EQUAL = {
    "custom_class": "    class Eq:\n        def __eq__(self, o):\n            return True\n"
                    "        def __ne__(self, o):\n            return False\n        __hash__ = object.__hash__\n"
                    "    return Eq()\n",
    "int_subclass": "    class I(int):\n        def __eq__(self, o):\n            return True\n"
                    "        __hash__ = int.__hash__\n    return I(-12345)\n",
    "str_subclass": "    class S(str):\n        def __eq__(self, o):\n            return True\n"
                    "        __hash__ = str.__hash__\n    return S('nope')\n",
    "list_subclass": "    class L(list):\n        def __eq__(self, o):\n            return True\n    return L([1])\n",
    "generator": "    return (x for x in [a + b])\n",
    "function": "    return lambda: a + b\n",
}


@pytest.mark.parametrize("name", sorted(ALWAYS_EQUAL))
def test_always_equal_and_non_plain_results_fail(name):
    """A custom object (or generator, function) is not plain data: fail, saying so. A builtin's subclass
    arrives as the builtin value its base type holds, so its ``__eq__`` never runs: wrong value, AssertionError."""
    r = run_check(completion_check(ALWAYS_EQUAL[name]), FAST)
    assert r.verdict == "fail", r
    if name.endswith("subclass"):
        assert r.detail.startswith("AssertionError"), r.detail
    else:
        assert "not plain data" in r.detail and "add returned" in r.detail, r.detail


PATCHES = {  # name: (code run by the candidate, how its failure reads)
    "AssertionError": ("import builtins\nbuiltins.AssertionError = type('AssertionError', (Exception,), {})\n",
                       "AssertionError"),
    "print": ("import builtins\nbuiltins.print = lambda *a, **k: None\n", "AssertionError"),
    "all": ("import builtins\nbuiltins.__dict__['all'] = lambda x: True\n", "AssertionError"),
    "exit": ("import builtins, os, sys\nsys.exit = builtins.exit = builtins.quit = lambda *a: os._exit(0)\n"
             "sys.excepthook = lambda *a: os._exit(0)\n", "AssertionError"),
    "atexit": ("import atexit, os\natexit.register(lambda: os._exit(0))\n", "AssertionError"),
    # these break the candidate's own end of the pipe (json needs them): still a fail, for that reason
    "isinstance": ("import builtins\nbuiltins.isinstance = lambda *a: True\n", "the candidate's process ended"),
    "len_import": ("import builtins, sys\nbuiltins.__dict__['len'] = lambda x: 0\n"
                   "builtins.__dict__['__import__'] = lambda *a, **k: sys\n",
                   ("the candidate's process ended", "malformed reply from the candidate's process")),
}


@pytest.mark.parametrize("when", ["definition", "call"])
@pytest.mark.parametrize("name", sorted(PATCHES))
def test_patched_builtins_do_not_change_the_verdict(name, when):
    """Builtins patched in the candidate's process (where it defines its function, or inside a call) cannot
    reach the tests: a wrong answer fails, by the tests' own assert where the candidate's side still answers."""
    code, reads = PATCHES[name]
    if when == "call":
        job = completion_check("".join("    " + ln + "\n" for ln in code.splitlines()) + "    return a - b\n")
    else:
        job = FunctionCheck(code + PROBLEM + "    return a - b\n", "add", CHECK, PROBLEM + "    pass\n")
    r = run_check(job, FAST)
    assert r.verdict == "fail" and r.detail.startswith(reads), r


TRACE = """import sys, threading
def _tracer(frame, event, arg):
    # skip to the last line of every harness-like frame, to step over failing asserts
    if event == 'line' and frame.f_code.co_name in ('check', 'judge', 'main', 'run', 'serve', '_answer'):
        try:
            frame.f_lineno = max(line for _, _, line in frame.f_code.co_lines() if line)
        except Exception:
            pass
    return _tracer
sys.settrace(_tracer)
threading.settrace(_tracer)
sys.setprofile(lambda *a: None)
"""


@pytest.mark.parametrize("frames", ["harness", "candidate"])
def test_trace_hooks_do_not_change_the_verdict(frames):
    """Trace and profile hooks see only the candidate's process. Jumping over lines in its own serving loop
    breaks its end of the pipe (fail); hooks that leave that alone change nothing (the tests' assert fails)."""
    code = TRACE if frames == "harness" else TRACE.replace("('check', 'judge', 'main', 'run', 'serve', '_answer')",
                                                           "('add',)")
    job = FunctionCheck(code + PROBLEM + "    return a - b\n", "add", CHECK, PROBLEM + "    pass\n")
    r = run_check(job, FAST)
    assert r.verdict == "fail", r
    assert r.detail.startswith("the candidate's process ended" if frames == "harness" else "AssertionError"), r


def test_junk_on_descriptors_does_not_erase_the_reason():
    """Junk on every descriptor but the reply pipe (its number is in spec.json): the tests' own reason stands.
    Junk on the reply pipe too: the reason is the malformed reply (still a fail, never an error or a pass)."""
    junk_all_but_reply = ("    import json, os\n    keep = json.load(open('spec.json'))['call_fds'][1]\n"
                          "    for fd in range(256):\n        if fd != keep:\n            try:\n"
                          "                os.write(fd, b'{\"status\": \"ok\"}\\n' * 100)\n"
                          "            except OSError:\n                pass\n    return a - b\n")
    r = run_check(completion_check(junk_all_but_reply), FAST)
    assert r.verdict == "fail" and r.detail.startswith("AssertionError"), r
    junk_everywhere = junk_all_but_reply.replace("if fd != keep", "if True")
    r = run_check(completion_check(junk_everywhere), FAST)
    assert r.verdict == "fail" and "malformed reply" in r.detail, r


def test_function_check_protocol_details():
    # the candidate's exceptions reach the tests as the builtin type (catchable) or as CandidateError
    raises = "    if a < 0:\n        raise ValueError('negative')\n    return a + b\n"
    check = ("def check(candidate):\n    try:\n        candidate(-1, 1)\n    except ValueError as e:\n"
             "        assert str(e) == 'negative'\n    else:\n        raise AssertionError('no ValueError')\n"
             "    assert candidate(2, 3) == 5\n")
    assert run_check(completion_check(raises, check), FAST).verdict == "pass"
    own = "    class Oops(Exception):\n        pass\n    raise Oops('mine')\n"
    r = run_check(completion_check(own), FAST)
    assert r.verdict == "fail" and r.detail == "Oops: mine", r
    # an argument changed in place is seen by the tests, as when the function runs in their process
    sorts = FunctionCheck("def srt(xs, d):\n    xs.sort()\n    d['n'] = len(xs)\n", "srt",
                          "def check(c):\n    xs, d = [3, 1, 2], {}\n    assert c(xs, d=d) is None\n"
                          "    assert xs == [1, 2, 3] and d == {'n': 3}, (xs, d)\n")
    assert run_check(sorts, FAST).verdict == "pass"
    # plain data keeps its exact type: a tuple is not a list, -0.0 and nan survive, big ints and bytes too
    exact = FunctionCheck("def f(x):\n    return (x, [x], {x: {1.5, -0.0}}, 2 ** 200, b'\\x00', float('nan'))\n", "f",
                          "import math\ndef check(c):\n    r = c(7)\n"
                          "    assert type(r) is tuple and r[:5] == (7, [7], {7: {1.5, 0.0}}, 2 ** 200, b'\\x00')\n"
                          "    assert math.isnan(r[5]) and c(7) != [7, [7]]\n")
    assert run_check(exact, FAST).verdict == "pass"
    # the tests passing something that is not plain data is the harness's problem: error, not fail
    r = run_check(completion_check("    return a + b\n", "def check(c):\n    c(object(), 1)\n"), FAST)
    assert r.verdict == "error" and "not plain data" in r.detail, r
    r = run_check(completion_check("    return a + b\n", "def check(c):\n    c(1, 2\n"), FAST)
    assert r.verdict == "error" and "could not be set up" in r.detail, r
    # no such function: fail
    r = run_check(FunctionCheck("x = 1\n", "add", CHECK), FAST)
    assert r.verdict == "fail" and "NameError" in r.detail, r
    # a reply larger than message_mb: fail, saying so
    r = run_check(completion_check("    return 'x' * (3 << 20)\n"), SandboxConfig(wall_s=10, message_mb=1))
    assert r.verdict == "fail" and "more than the limit" in r.detail, r


# ---- a fresh /proc in the sandbox's PID namespace ---------------------------------------------------------

PROC = ("import json, os\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "cmd = {p: open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode() for p in pids}\n"
        "print(json.dumps([pids, cmd]))\n")


def test_proc_shows_only_the_sandbox(ns):
    marker = f"asd-host-marker-{uuid.uuid4().hex}"  # a host process whose command line must stay invisible
    host = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(30)  # {marker}"])
    try:
        r = run_program(PROC, ns)
    finally:
        host.kill()
        host.wait()
    assert r.verdict == "pass" and r.isolation == "namespaces", r
    pids, cmd = json.loads(r.stdout)
    assert pids == [1, 2], pids  # the namespace's init and the program: nothing of the host
    assert cmd["1"].endswith("child.py launch ") and cmd["2"].endswith("child.py run "), cmd
    assert not any(marker in c or "pytest" in c for c in cmd.values()), cmd
    # the same through a function check: the candidate sees its init and itself; the judge is not there
    job = FunctionCheck("import os\ndef pids():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n",
                        "pids", "def check(c):\n    assert c() == [1, 2], c()\n")
    r = run_check(job, ns)
    assert r.verdict == "pass" and r.isolation == "namespaces", r


# ---- isolation never degrades silently ------------------------------------------------------------------


def test_probe_out_of_time_is_an_error_not_a_fallback(monkeypatch, ns):
    """A probe that runs out of time (a loaded machine) is retried, then raises: never taken as 'no namespaces'."""
    monkeypatch.setattr(sb, "PROBE_WALL_S", (0.001, 0.002))  # no interpreter starts in 1 ms: every try times out
    monkeypatch.setattr(sb, "_probe_result", None)
    with pytest.raises(IsolationUnavailable, match="ran out of time in every try"):
        sb.probe_isolation()
    assert sb._probe_result is None  # not cached: the next run probes again
    with pytest.raises(IsolationUnavailable):
        run_check(completion_check("    return a + b\n"), SandboxConfig(isolation="auto"))
    monkeypatch.setattr(sb, "PROBE_WALL_S", (30.0,))
    assert sb.probe_isolation().mode == "namespaces"  # with time enough, the same probe concludes


_NO_SYS_ADMIN = """
import json, warnings
from asd.eval.sandbox import FunctionCheck, IsolationUnavailable, SandboxConfig, probe_isolation, run_check
job = FunctionCheck("def add(a, b):\\n    return a + b\\n", "add", "def check(c):\\n    assert c(2, 3) == 5\\n")
out = {"probe": vars(probe_isolation())}
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    r = run_check(job, SandboxConfig(isolation="auto"))
out.update(auto=[r.verdict, r.isolation], warned=[str(x.message) for x in w])
try:
    run_check(job, SandboxConfig(isolation="namespaces"))
    out["required"] = "ran"
except IsolationUnavailable as e:
    out["required"] = str(e)
print(json.dumps(out))
"""


def test_fallback_only_for_lack_of_permission_and_recorded(ns):
    """Without CAP_SYS_ADMIN (setpriv drops it) unshare fails with EPERM: auto falls back to audit, warns and
    records it on the result; isolation: namespaces refuses to run."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_SYS_ADMIN")
    env = dict(os.environ, PYTHONPATH=str(Path(sb.__file__).resolve().parents[2]))
    p = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin",
                        sys.executable, "-c", _NO_SYS_ADMIN], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["probe"]["mode"] == "audit" and "EPERM" in out["probe"]["reason"], out
    assert out["auto"] == ["pass", "audit"], out
    assert any("audit-hook" in m for m in out["warned"]), out
    assert "not permitted here" in out["required"] and "EPERM" in out["required"], out


def test_every_result_records_its_isolation(ns):
    from asd.data.humaneval import HumanEvalProblem
    from asd.eval.humaneval import evaluate

    p = HumanEvalProblem("t/0", PROBLEM, "add", "    return a + b\n", CHECK)
    res = evaluate([p], {"t/0": ["    return a + b\n", "    return a - b\n"]}, cfg=ns)
    assert res["verdicts"] == {"pass": 1, "fail": 1}
    assert res["isolation"] == {"requested": "namespaces", "used": "namespaces", "fallback_reason": None,
                                "counts": {"namespaces": 2}}
    res = evaluate([p], {"t/0": ["    return a + b\n"]}, cfg=AUDIT)
    assert res["isolation"]["used"] == "audit" and res["isolation"]["counts"] == {"audit": 1}
    assert "requested" in res["isolation"]["fallback_reason"]
