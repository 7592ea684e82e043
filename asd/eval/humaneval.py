"""HumanEval functional correctness: pass@k with the unbiased estimator, via the sandbox.

For a problem with n samples of which c pass, the unbiased estimate of pass@k
(Chen et al., 2021) is ``1 - C(n-c, k) / C(n, k)``, computed as a product to stay
exact for large n: ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``; it is 1 when n - c < k.
Each sample runs as ``prompt + completion + test + check(entry_point)`` in
``asd.eval.sandbox`` (a pass needs the program to run to its end).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from asd.data.humaneval import HumanEvalProblem
from asd.eval.sandbox import SandboxConfig, SandboxResult, run_many


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c correct."""
    if not (0 <= c <= n) or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """Mean over problems of ``pass_at_k``; ns, cs: [P] samples and correct samples per problem."""
    if len(ns) != len(cs) or not ns:
        raise ValueError(f"{len(ns)} sample counts for {len(cs)} correct counts")
    return float(np.mean([pass_at_k(n, c, k) for n, c in zip(ns, cs)]))


_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def program_from_output(problem: HumanEvalProblem, output: str) -> str:
    """The program to run for a model's raw output.

    A body (plain completion) runs as ``problem.program(output)``. A chat answer with a
    fenced block, or code that defines the entry point itself, runs after the prompt's
    own definitions (the prompt's function gets a ``pass`` body, then is redefined).
    """
    m = _FENCE.search(output)
    code = m.group(1) if m else output
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE):
        return f"{problem.prompt}    pass\n\n{code}\n{problem.test}\ncheck({problem.entry_point})\n"
    return problem.program(code if m else output)


def run_completions(
    problems: Sequence[HumanEvalProblem],
    completions: Mapping[str, Sequence[str]],
    cfg: SandboxConfig | None = None,
    progress: bool = False,
) -> dict[str, list[SandboxResult]]:
    """Run every completion of every problem; ``completions``: task_id → samples. Returns task_id → results."""
    by_id = {p.task_id: p for p in problems}
    unknown = [t for t in completions if t not in by_id]
    if unknown:
        raise ValueError(f"completions for unknown task ids {unknown[:5]}; e.g. {next(iter(by_id), None)!r}")
    jobs = [(t, by_id[t].program(c)) for t, samples in completions.items() for c in samples]
    results = run_many([prog for _, prog in jobs], cfg, progress=progress)
    out: dict[str, list[SandboxResult]] = {t: [] for t in completions}
    for (t, _), r in zip(jobs, results):
        out[t].append(r)
    return out


def evaluate(
    problems: Sequence[HumanEvalProblem],
    completions: Mapping[str, Sequence[str]],
    ks: Sequence[int] = (1,),
    cfg: SandboxConfig | None = None,
    progress: bool = False,
) -> dict:
    """pass@k for each k (where every problem has at least k samples), plus verdict counts."""
    res = run_completions(problems, completions, cfg, progress)
    ns = [len(r) for r in res.values()]
    cs = [sum(x.passed for x in r) for r in res.values()]
    out = {f"pass@{k}": mean_pass_at_k(ns, cs, k) for k in ks if min(ns) >= k}
    verdicts: dict[str, int] = {}
    for r in res.values():
        for x in r:
            verdicts[x.verdict] = verdicts.get(x.verdict, 0) + 1
    out.update(problems=len(res), samples=sum(ns), verdicts=verdicts)
    return out
