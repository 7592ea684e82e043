"""Task generation: formats, determinism, held-out split, levels, bad input."""
import hashlib

import pytest

from asd.testbed import kb, scoring, tasks


@pytest.mark.parametrize("task", tasks.TASKS)
@pytest.mark.parametrize("level", tasks.LEVELS)
def test_reference_answers_score_correct(task, level):
    exs = tasks.generate(task, 6, level, seed=1)
    assert len(exs) == 6 and all(e.task == task and e.level == level for e in exs)
    assert all(tasks.is_test_prompt(e.prompt) for e in exs)
    assert scoring.score(exs, [e.answer for e in exs]) == [True] * 6


def test_formats():
    g = tasks.generate("gsm8k", 20, 2, 0)
    assert all(e.answer.splitlines()[-1] == f"#### {e.meta['number']}" for e in g)
    for e in g:  # digit-wise: no carry, no borrow
        a, op, b = e.answer.split("=")[0].partition("+") if "+" in e.answer else e.answer.split("=")[0].partition("-")
        assert all((int(x) + int(y) < 10) if op == "+" else int(x) >= int(y) for x, y in zip(a.zfill(2), b.zfill(2)))
    for t in ("mmlu", "truthfulqa"):
        for e in tasks.generate(t, 3, 4, 0):
            assert e.answer.endswith(f". Answer: {e.meta['label']}") and e.prompt.endswith("\nAnswer:")
            assert e.answer.startswith(e.meta["choices"]["ABCD".index(e.meta["label"])]) and len(e.meta["choices"]) == 4
    for e in tasks.generate("truthfulqa", 5, 3, 0):
        assert e.meta["rumour"] != e.meta["label"]
        rumoured = e.meta["choices"]["ABCD".index(e.meta["rumour"])]
        assert f"is {rumoured}." in e.prompt
    he = tasks.generate("humaneval", 2, 1, 0)[0]
    assert he.prompt.startswith("def solve(x):") and ">>> solve(" in he.prompt


def test_deterministic_and_seeded():
    a = tasks.generate("mmlu", 5, 3, seed=7)
    assert a == tasks.generate("mmlu", 5, 3, seed=7)
    assert a != tasks.generate("mmlu", 5, 3, seed=8)


def test_levels_use_their_buckets():
    for level, buckets in tasks.LEVEL_BUCKETS.items():
        for e in tasks.generate("gsm8k", 10, level, 0):
            assert e.meta["bucket"] in buckets
    assert {e.meta["bucket"] for e in tasks.generate("mmlu", 10, 1, 0)} == {-1}


def test_training_stream_never_emits_test_prompts():
    s = tasks.TrainingStream(seed=0)
    pairs = [next(s) for _ in range(3000)]
    task_prompts = [p for p, _ in pairs if not p.startswith("Tell me about ")]
    assert len(task_prompts) > 2000 and not any(tasks.is_test_prompt(p) for p in task_prompts)
    assert [next(tasks.TrainingStream(0)) for _ in range(1)] == pairs[:1]


def test_wrong_answers_fail():
    exs = tasks.generate_mix(2, 3)
    bad = ["#### -1" if e.task == "gsm8k" else "    return None" if e.task == "humaneval"
           else "Answer: " + "ABCD"[("ABCD".index(e.meta["label"]) + 1) % 4] for e in exs]
    assert not any(scoring.score(exs, bad))


def test_humaneval_runaway_code_times_out():
    e = tasks.generate("humaneval", 1, 2, 0)[0]
    assert scoring.score([e, e], ["    while True:\n        pass", e.answer]) == [False, True]


@pytest.mark.parametrize("bad", [dict(task="mmlu2"), dict(level=0), dict(level=6), dict(level="3")])
def test_bad_input_is_a_clear_error(bad):
    kw = dict(task="mmlu", n=1, level=1, seed=0) | bad
    with pytest.raises(ValueError, match="valid"):
        tasks.generate(**kw)


def test_knowledge_base_is_frozen():
    ents = kb.entities()
    assert len(ents) == kb.NUM_BUCKETS * kb.PER_BUCKET
    assert len({e.name for e in ents}) == len(ents)
    # the committed weights memorised exactly this table: changing kb.py silently breaks them
    assert hashlib.sha256(repr(ents).encode()).hexdigest()[:16] == "694125a60bbad0f2"
