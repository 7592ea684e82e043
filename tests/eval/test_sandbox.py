"""The sandbox: verdicts, limits, isolation, and hostile completions.

Each hostile case is a completion of ``add(a, b)`` that does its damage and then returns
the right answer, so an uncontained attack would *pass*; contained, it must fail (or time
out), the harness must stay alive and nothing may leak or be left running.
"""
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from asd.eval.sandbox import SandboxConfig, namespaces_available, run_program

NS = namespaces_available()
needs_ns = pytest.mark.skipif(not NS, reason="needs root and unshare (PID/net/mount namespaces)")
FAST = SandboxConfig(wall_s=4.0, cpu_s=4.0)
PROBLEM = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n"
TEST = "\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def completion_program(body: str) -> str:
    return PROBLEM + body + TEST


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


def test_verdicts_pass_fail_timeout():
    assert run_program(completion_program("    return a + b\n"), FAST).verdict == "pass"
    r = run_program(completion_program("    return a - b\n"), FAST)
    assert r.verdict == "fail" and r.detail.startswith("AssertionError")
    r = run_program(completion_program("    return a +\n"), FAST)
    assert r.verdict == "fail" and "SyntaxError" in r.detail
    t0 = time.monotonic()
    r = run_program(completion_program("    while True:\n        pass\n"), SandboxConfig(wall_s=1.5, cpu_s=10))
    assert r.verdict == "timeout" and time.monotonic() - t0 < 5
    r = run_program("import sys\nsys.exit(3)\n", FAST)
    assert r.verdict == "fail"


def test_cpu_limit_is_a_timeout():
    r = run_program("while True:\n    pass\n", SandboxConfig(wall_s=20, cpu_s=1))
    assert r.verdict == "timeout" and r.detail == "CPU-time limit" and r.wall_s < 19  # before the wall limit


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


def test_setup_failure_is_error_not_fail(monkeypatch):
    import asd.eval.sandbox as sb

    if not NS:
        pytest.skip("needs namespaces mode")
    real = sb._spec
    monkeypatch.setattr(sb, "_spec", lambda *a: {**real(*a), "hide": ["/nonexistent-dir-for-test"]})
    r = sb.run_program("print(1)", FAST)
    assert r.verdict == "error" and "sandbox setup failed" in r.detail and r.stdout == ""


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


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_completion_is_contained(name):
    cfg = SandboxConfig(wall_s=2.5, cpu_s=2.0, output_bytes=4096)
    t0 = time.monotonic()
    r = run_program(completion_program(HOSTILE[name]), cfg)
    assert r.verdict in ("fail", "timeout"), (name, r)
    assert time.monotonic() - t0 < cfg.wall_s + 6
    assert len(r.stdout) <= 4096
    time.sleep(0.2)
    assert leftovers(r.uid) == [], f"{name}: processes left under the sandbox uid"


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


@needs_ns
def test_namespaces_mode_details():
    prog = ("import os\nprint(os.getuid(), os.getpid(), os.getcwd())\n"
            "print(sorted(os.listdir('/root')))\nprint(sorted(os.listdir('/tmp')))\n")
    r = run_program(prog, FAST)
    uid, pid, cwd = r.stdout.splitlines()[0].split()
    assert r.verdict == "pass" and int(uid) == r.uid and int(uid) >= 2 ** 20
    assert pid == "2" and cwd == "/tmp/work"  # PID 1 is the namespace's init, the program is PID 2
    assert r.stdout.splitlines()[1] in ("['.pyenv']", "[]")  # /root hidden except the Python install
    # the private /tmp holds the work dir, plus the bound-back Python install when it lives under /tmp
    py_under_tmp = {Path(os.path.realpath(p)).parts[2] for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)
                    if os.path.realpath(p).startswith("/tmp/")}
    assert r.stdout.splitlines()[2] == str(sorted({"work"} | py_under_tmp))


AUDIT = SandboxConfig(wall_s=2.5, cpu_s=2.0, isolation="audit")


@pytest.mark.parametrize("name", ["os_exit_0", "kill_parent", "kill_group", "infinite_loop", "memory_hog"])
def test_audit_fallback_contains(name):
    r = run_program(completion_program(HOSTILE[name]), AUDIT)
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
