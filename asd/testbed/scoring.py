"""Scoring of testbed outputs in the benchmarks' own terms.

- gsm8k: the number after the last ``####`` equals ``meta["number"]`` (exact match);
- mmlu / truthfulqa: the letter read by ``asd.eval.mmlu.extract_letter`` ("... Answer: B") is right;
- humaneval: prompt + completion is executed with the hidden asserts in a child
  Python process (``subprocess``, per-program time limit, one process per batch), pass/fail.

The project's general sandbox (``asd.eval``) is the place for untrusted code at scale;
this module is the testbed's own, dependency-free scorer: the programs it runs are tiny
arithmetic bodies written by our own models, in a throw-away child process with a
wall-clock limit, resource limits and an empty temporary working directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from asd.testbed.tasks import Example, check_task

_NUM = re.compile(r"####\s*(-?[\d,]+)")

# Runs in the child: reads [{program, tests}] as JSON on stdin, prints one JSON list of bools.
_RUNNER = r"""
import json, signal, sys, resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
items = json.load(sys.stdin)
def _alarm(*a):
    raise TimeoutError()
signal.signal(signal.SIGALRM, _alarm)
out = []
for it in items:
    ok = False
    try:
        signal.setitimer(signal.ITIMER_REAL, %(limit)f)
        g = {"__name__": "__candidate__"}
        exec(compile(it["program"] + "\n" + it["tests"], "<candidate>", "exec"), g)
        ok = True
    except BaseException:
        ok = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    out.append(ok)
sys.stdout.write(json.dumps(out))
"""


def gsm8k_number(output: str) -> int | None:
    """The final answer of a gsm8k-style output (``#### N``), or None."""
    m = _NUM.findall(output)
    if not m:
        return None
    try:
        return int(m[-1].replace(",", ""))
    except ValueError:
        return None


def mc_letter(output: str) -> str | None:
    """The chosen letter, read as the project's MMLU metric reads it ("... Answer: B", or a leading "B")."""
    from asd.eval.mmlu import extract_letter

    return extract_letter(output)


def run_programs(programs: Sequence[str], tests: Sequence[str], limit_s: float = 0.25) -> list[bool]:
    """Pass/fail of each ``program`` + its ``tests`` in one child process (time limit each)."""
    assert len(programs) == len(tests)
    if not programs:
        return []
    items = [{"program": p, "tests": t} for p, t in zip(programs, tests)]
    with tempfile.TemporaryDirectory(prefix="asd-testbed-") as tmp:
        try:
            res = subprocess.run(
                [sys.executable, "-I", "-c", _RUNNER % {"limit": limit_s}],
                input=json.dumps(items),
                capture_output=True,
                text=True,
                cwd=tmp,
                timeout=10 + limit_s * len(items),
            )
            out = json.loads(res.stdout) if res.returncode == 0 else None
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            out = None
    if out is None or len(out) != len(items):
        if len(items) == 1:
            return [False]
        # a program killed the batch (e.g. exhausted memory): score one by one
        return [run_programs([p], [t], limit_s)[0] for p, t in zip(programs, tests)]
    return [bool(x) for x in out]


def score(examples: Sequence[Example], outputs: Sequence[str]) -> list[bool]:
    """Correctness of each output (the generated completion text, specials removed)."""
    if len(examples) != len(outputs):
        raise ValueError(f"{len(examples)} examples but {len(outputs)} outputs")
    result: list[bool | None] = [None] * len(examples)
    he: list[int] = []
    for i, (ex, out) in enumerate(zip(examples, outputs)):
        check_task(ex.task)
        if ex.task == "gsm8k":
            result[i] = gsm8k_number(out) == ex.meta["number"]
        elif ex.task in ("mmlu", "truthfulqa"):
            result[i] = mc_letter(out) == ex.meta["label"]
        else:
            he.append(i)
    if he:
        progs = [examples[i].prompt + outputs[i] for i in he]
        passed = run_programs(progs, [examples[i].meta["tests"] for i in he])
        for i, ok in zip(he, passed):
            result[i] = ok
    return [bool(r) for r in result]
