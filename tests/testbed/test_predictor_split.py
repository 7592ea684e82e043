"""The predictor split: disjoint from the training stream and from every evaluation draw; counts; sequences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from asd.testbed import predictor_split as S
from asd.testbed import tasks as T


def _eval_prompts() -> set[str]:
    """Prompts of every evaluation generator: tasks.generate (asd testbed evaluate, calibrate, asd cascade)
    and the pipeline's testbed_prompts, over several seeds."""
    from asd.pipeline import testbed_prompts

    out = {e.prompt for seed in (0, 1, 7, 12345) for e in T.generate_mix(6, seed)}
    out |= {e.prompt for e in testbed_prompts(np.arange(200), seed=1)}
    return out


def test_predictor_prompts_are_disjoint_from_training_and_evaluation():
    pred = {S.prompt_for_sample(i, seed)[0].prompt for seed in (0, 3) for i in range(400)}
    ev = _eval_prompts()
    train = {p for p, _ in itertools.islice(T.TrainingStream(0), 20000)}
    assert len(pred) > 700 and len(ev) > 500 and len(train) > 5000  # two seeds share prompts of finite cells
    assert not pred & ev and not pred & train and not ev & train
    assert all(T.split_of(p) == "predictor" for p in pred)
    assert all(T.split_of(p) == "evaluation" for p in ev)
    # task prompts of the stream are never held out (fact sheets, "Tell me about X.", are no task prompt)
    assert all(T.split_of(p) == "train" for p in train if not p.startswith("Tell me about"))
    # the two held-out splits partition the held-out residue (the splits are hash predicates of the text)
    for p in itertools.chain(pred, ev, train):
        assert T.is_test_prompt(p) == (T.is_predictor_prompt(p) or T.is_evaluation_prompt(p))
        assert not (T.is_predictor_prompt(p) and T.is_evaluation_prompt(p))


def test_split_sizes_are_about_half_of_the_held_out_prompts():
    """The second hash is independent of crc32 (a crc32 of a prefixed text is not): about half each."""
    allp = set(S._enumerate("humaneval", 1)) | set(S._enumerate("gsm8k", 2))
    held = [p for p in allp if T.is_test_prompt(p)]
    frac = np.mean([T.is_predictor_prompt(p) for p in held])
    assert len(held) > 1500 and 0.45 < frac < 0.55, frac


@pytest.mark.parametrize("cell", sorted(S.FINITE_CELLS))
def test_finite_cells_are_enumerated_exactly(cell):
    """Every prompt the generator draws is in the enumeration, and the sequence collects exactly the
    enumeration's predictor prompts, each once."""
    import random

    task, level = cell
    allp = set(S._enumerate(task, level))
    rng, pool = random.Random(5), T.level_pool(level)
    assert all(T.draw(task, level, rng, pool)[0] in allp for _ in range(3000))
    n = S.distinct_count(task, level)
    seq = S.CellSequence(task, level, seed=1)
    got = [seq.get(j)[0].prompt for j in range(n)]
    assert len(set(got)) == n == sum(map(T.is_predictor_prompt, allp))
    # then it starts over in a fresh order, marked as a repeat
    again = [seq.get(n + j) for j in range(n)]
    assert {e.prompt for e, _ in again} == set(got) and {r for _, r in again} == {1}
    assert [e.prompt for e, _ in again] != got


def test_counts_of_the_finite_cells():
    counts = {c: S.distinct_count(*c) for c in sorted(S.FINITE_CELLS)}
    assert counts == {
        ("gsm8k", 2): 376,
        ("gsm8k", 3): 194,
        ("gsm8k", 4): 204,
        ("gsm8k", 5): 188,
        ("humaneval", 1): 480,
        ("humaneval", 2): 350,
        ("humaneval", 3): 143,
        ("humaneval", 4): 154,
        ("humaneval", 5): 142,
    }
    assert S.distinct_count("mmlu", 5) is None and S.distinct_count("gsm8k", 1) is None


def test_distinct_allocation_and_balanced_allocation():
    cells = S.cells()
    slots = [S.slot(i, cells, repeats=False) for i in range(100_000)]
    assert len(set(slots)) == len(slots)  # each (cell, position) once: all prompts distinct
    per = np.bincount([c for c, _ in slots], minlength=20)
    for c, (task, level) in enumerate(cells):
        cap = S.distinct_count(task, level)
        assert per[c] == cap if cap is not None else per[c] in (8888, 8889)
    assert all(S.slot(i, cells, repeats=False)[0] == i % 20 for i in range(2000))  # small runs: round robin
    assert [S.slot(i, cells, repeats=True) for i in (0, 19, 20, 41)] == [(0, 0), (19, 0), (0, 1), (1, 2)]


def test_sample_prompts_are_deterministic_and_independent_of_batching():
    a = [S.prompt_for_sample(i, 4)[0] for i in range(60)]
    S._SEQUENCES.clear()
    b = [S.prompt_for_sample(i, 4)[0] for i in reversed(range(60))][::-1]
    assert a == b and len({e.prompt for e in a}) == 60
    assert [e.prompt for e in a] != [S.prompt_for_sample(i, 5)[0].prompt for i in range(60)]
    assert [(e.task, e.level) for e in a[:20]] == S.cells()


def test_capacity_and_bad_cells_are_errors():
    cells = S.cells(("gsm8k",), (3, 4))
    S.capacity(cells, 398)
    with pytest.raises(ValueError, match="hold only 398 distinct predictor prompts.*repeats: true"):
        S.capacity(cells, 399)
    S.capacity(S.cells(), 10**6)  # unbounded cells: no limit
    with pytest.raises(ValueError, match="unknown testbed task"):
        S.cells(("gsm9k",), (1,))
    with pytest.raises(ValueError, match="unknown difficulty level"):
        S.cells(("gsm8k",), (6,))
