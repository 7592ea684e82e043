"""The judge of :mod:`asd.eval.sandbox`: run a problem's tests against a function that lives in the sandbox.

Standalone (stdlib only, never imports ``asd``): the parent starts
``python -I -S _sandbox_judge.py`` from the installed package and writes the job to its stdin
as JSON: ``setup`` and ``test`` (trusted source: a HumanEval problem's prompt, for its imports
and helper functions, and its ``check(candidate)``), ``entry_point``, limits, and three
descriptors: ``call_fds`` (write requests, read replies; the other ends are the sandboxed
child's) and ``report_fd`` (the verdict, to the parent; the child never holds it).

The candidate's code never runs here. ``check`` gets a :class:`Candidate` proxy: each call
sends the plain-data arguments to the child (``_sandbox_wire.py``), waits for the reply and
returns the decoded plain value, raises the candidate's exception (a builtin exception type by
name, else :class:`CandidateError`), or stops the tests with :class:`CandidateBroken` when the
child ends, answers out of turn or with a malformed message, or returns something that is not
plain data. ``CandidateBroken`` derives from ``BaseException`` (an ``except Exception`` in a test
cannot swallow it) and is remembered: once broken, the verdict is fail whatever the tests do.

Report (one JSON line on ``report_fd``): ``{"status": "pass" | "fail" | "error", "detail",
"broken", "gone", "calls"}``; ``error`` is the harness's fault (the tests do not compile, an argument
is not plain data), never the candidate's. The judge sets its own resource limits first.
"""

import builtins
import json
import os
import resource
import sys


class CandidateBroken(BaseException):
    """The candidate's process broke the protocol; the verdict is fail (see the module docstring)."""


class CandidateError(Exception):
    """An exception of the candidate's own (non-builtin) type, carried as ``"Type: message"``."""


class HarnessError(Exception):
    """The tests asked for something the protocol cannot carry (verdict error)."""


def _load_wire():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_wire.py")
    wire = type(sys)("wire")
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), wire.__dict__)
    return wire


def _limits(job):
    cpu = max(1, int(job["cpu_s"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = job["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = job["file_size_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (job["max_files"], job["max_files"]))


PLAIN = "None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict"


class Candidate:
    """Callable stand-in for the candidate's function: every call goes to the sandboxed child."""

    def __init__(self, wire, name, requests, replies, max_bytes):
        self.__name__ = self.__qualname__ = name
        self._wire, self._requests, self._replies, self._max = wire, requests, replies, max_bytes
        self.calls = 0
        self.broken = None  # why the candidate's process broke the protocol (first reason only)
        self.gone = False  # it ended (EOF on the reply pipe)

    def _break(self, reason, gone=False):
        if self.broken is None:
            self.broken, self.gone = reason, gone
        raise CandidateBroken(self.broken)

    def _receive(self, seq, what):
        try:
            msg = self._wire.read(self._replies, self._max)
        except self._wire.Malformed as e:
            self._break(f"malformed reply from the candidate's process ({what}): {e}")
        except OSError as e:
            self._break(f"reading the candidate's reply ({what}): {e}", gone=True)
        if msg is None:
            self._break(f"the candidate's process ended ({what})", gone=True)
        if type(msg) is not dict or msg.get("seq") != seq:
            self._break(f"malformed reply from the candidate's process ({what}): not the reply to this call")
        return msg

    def ready(self):
        """Wait for the child's first message: its code ran and defines the function, or why not."""
        msg = self._receive(0, "before the first call")
        if msg.get("ready") is True and len(msg) == 2:
            return
        self._raised(msg, "while defining the function")
        self._break("malformed reply from the candidate's process (before the first call)")

    def _raised(self, msg, when):
        r = msg.get("raised")
        if not (type(r) is list and len(r) == 2 and all(type(x) is str for x in r)):
            return
        name, message = r
        cls = getattr(builtins, name, None) if name.isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                exc = cls(message)
            except Exception:
                exc = CandidateError(f"{name}: {message}")
            raise exc
        if isinstance(cls, type) and issubclass(cls, BaseException):  # SystemExit, KeyboardInterrupt, ...
            self._break(f"{name}({message}) {when}")
        raise CandidateError(f"{name}: {message}")

    def __call__(self, *args, **kwargs):
        if self.broken is not None:
            raise CandidateBroken(self.broken)
        wire = self._wire
        try:
            request = {
                "seq": self.calls + 1,
                "args": [wire.encode(a) for a in args],
                "kwargs": [[k, wire.encode(v)] for k, v in kwargs.items()],
            }
        except wire.NotPlain as e:
            raise HarnessError(f"the tests pass an argument that is not plain data: {e}") from None
        self.calls += 1
        what = f"call {self.calls}"
        try:
            wire.write(self._requests, request)
        except OSError:
            self._break(f"the candidate's process ended ({what})", gone=True)
        msg = self._receive(self.calls, what)
        try:
            self._apply_mutations(msg.get("mutated", []), args, kwargs)
            if "value" in msg:
                return wire.decode(msg["value"])
        except wire.Malformed as e:
            self._break(f"malformed reply from the candidate's process ({what}): {e}")
        if "not_plain" in msg:
            self._break(
                f"{self.__name__} returned a value that is not plain data ({what}): {msg['not_plain']}; "
                f"results must be plain data ({PLAIN})"
            )
        self._raised(msg, f"in {self.__name__} ({what})")
        # anything else, a claim that our request was bad included (it comes from the untrusted side: it must not
        # turn a fail into an error), breaks the protocol
        self._break(f"malformed reply from the candidate's process ({what}): {str(msg.get('bad_request', ''))[:200]}")

    def _apply_mutations(self, mutated, args, kwargs):
        """Arguments the function changed in place: the tests see the change, as when it runs in their process."""
        if type(mutated) is not list:
            raise self._wire.Malformed("bad list of changed arguments")
        for item in mutated:
            if not (type(item) is list and len(item) == 2):
                raise self._wire.Malformed("bad list of changed arguments")
            key, enc = item
            if type(key) is int and 0 <= key < len(args):
                target = args[key]
            elif type(key) is str and key in kwargs:
                target = kwargs[key]
            else:
                raise self._wire.Malformed("a changed argument that does not exist")
            new = self._wire.decode(enc)
            if type(target) is not type(new) or type(new) not in (list, dict, set):
                raise self._wire.Malformed("a changed argument of another type")
            if type(new) is list:
                target[:] = new
            else:
                target.clear()
                target.update(new)


def judge(job, wire):
    """(status, detail, candidate) of one job; see the module docstring."""
    g: dict = {"__name__": "__judge__"}
    try:
        exec(compile(job["setup"], "setup.py", "exec"), g)
        exec(compile(job["test"], "test.py", "exec"), g)
        check = g["check"]
    except BaseException as e:
        return "error", f"the tests could not be set up: {type(e).__name__}: {str(e)[:300]}", None
    requests, replies = job["call_fds"]
    cand = Candidate(wire, job["entry_point"], requests, replies, job["message_bytes"])
    g[job["entry_point"]] = cand
    try:
        cand.ready()
        check(cand)
    except CandidateBroken:
        pass
    except HarnessError as e:
        return "error", str(e)[:500], cand
    except BaseException as e:
        if cand.broken is None:
            detail = str(e) if isinstance(e, CandidateError) else f"{type(e).__name__}: {e}"
            return "fail", detail[:500], cand
    if cand.broken is not None:
        return "fail", cand.broken[:500], cand
    return "pass", "", cand


def main():
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _limits(job)
    report_fd = job["report_fd"]
    try:
        status, detail, cand = judge(job, _load_wire())
    except BaseException as e:  # a bug of ours: never the candidate's fault
        status, detail, cand = "error", f"judge: {type(e).__name__}: {str(e)[:300]}", None
    for fd in job["call_fds"]:
        os.close(fd)  # the child sees EOF and ends
    report = {
        "status": status,
        "detail": detail,
        "broken": bool(cand and cand.broken is not None),
        "gone": bool(cand and cand.gone),
        "calls": cand.calls if cand else 0,
    }
    os.write(report_fd, (json.dumps(report) + "\n").encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
