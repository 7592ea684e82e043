"""Testbed tasks in the answer formats of the four benchmarks, seeded, difficulty levels 1–5.

Every task asks about a kingdom. On **level 1** the needed fact is stated in the prompt
(a fresh kingdom, reading only); on **levels 2–5** it must be recalled from the fixed
knowledge base the models memorised (``asd.testbed.kb``), drawn from rarer and rarer
frequency buckets (``LEVEL_BUCKETS``): bigger models, trained for the same number of
steps, remember more of the rare facts, so accuracy falls with the level and rises with
the stage.

Tasks (``TASKS``), the ``prompt`` is the user turn (apply the chat template to it) and
``answer`` the reference completion:

- ``gsm8k``: a word problem; worked step and a final line ``#### N`` (meta ``number``).
- ``mmlu``: four-option multiple choice; the answer names the value, then the letter:
  ``"Gesstin. Answer: D"`` (read by ``asd.eval.mmlu.extract_letter``; meta ``choices``, ``label``).
- ``humaneval``: a Python function header + docstring; the completion is the body, scored
  by hidden tests (meta ``entry_point``, ``tests``; see ``asd.testbed.scoring``).
- ``truthfulqa``: multiple choice where the prompt repeats a rumour that names a wrong
  option (the surface pattern); answer as for mmlu (meta ``choices``, ``label``, ``rumour``).

Splits (docs/testbed.md, "Splits"): a prompt is **held out** iff ``crc32(prompt) % 8 == 0``; the
training stream (``TrainingStream``) never emits a held-out prompt. The held-out prompts are split again by
an independent hash, ``blake2b-64(prompt) % 2``: 0 → the **predictor** split (training data of the quality
predictor, ``asd.testbed.predictor_split``), 1 → the **evaluation** split. ``generate`` (and so every
evaluation draw: ``asd testbed evaluate``, the pipeline's testbed prompts) emits evaluation prompts only.

Example::

    >>> ex = generate("gsm8k", 2, level=3, seed=0)[0]
    >>> ex.answer.splitlines()[-1].startswith("####")
    True
"""

from __future__ import annotations

import hashlib
import random
import zlib
from dataclasses import dataclass, field

from asd.testbed import kb

TASKS = ("gsm8k", "mmlu", "humaneval", "truthfulqa")
LEVELS = (1, 2, 3, 4, 5)
# difficulty level → knowledge-base frequency buckets its kingdoms come from (level 1: none, fact in prompt)
LEVEL_BUCKETS: dict[int, tuple[int, ...]] = {2: (0, 1, 2, 3), 3: (4, 5), 4: (6, 7), 5: (8, 9)}
TEST_MODULUS = 8
PREDICTOR_MODULUS = 2  # held-out prompts with blake2b-64(prompt) % 2 == 0 train the quality predictor
SPLITS = ("train", "predictor", "evaluation")
LETTERS = "ABCD"
IN_CONTEXT_FRACTION = 0.2  # share of level-1 (fact in prompt) examples in the training stream
FACT_SHEET_FRACTION = 0.1  # share of auxiliary fact-sheet documents in the training stream

_MC_QUESTIONS = {
    "capital": "What is the capital of {n}?",
    "color": "What is the color of {n}?",
    "animal": "Which animal is the emblem of {n}?",
}
_CONTEXT = {
    "capital": "The capital of {n} is {v}. ",
    "color": "The color of {n} is {v}. ",
    "animal": "The emblem of {n} is the {v}. ",
    "towers": "{n} has {v} towers. ",
}
_HE_FORMS = [  # (docstring with {T} = the towers phrase, expression with {t})
    ("Return x plus {T}, plus {c}.", "x + {t} + {c}"),
    ("Return x times {c}, plus {T}.", "x * {c} + {t}"),
    ("Return x minus {T}, times {c}.", "(x - {t}) * {c}"),
    ("Return {T} minus x, plus {c}.", "{t} - x + {c}"),
]
_HE_TEST_INPUTS = (0, 3, -7, 11)


@dataclass(frozen=True)
class Example:
    """One prompt with its reference answer."""

    id: str
    task: str
    level: int
    prompt: str  # the user turn (not chat-wrapped)
    answer: str  # reference completion
    meta: dict = field(default_factory=dict, hash=False, compare=False)


def is_test_prompt(prompt: str) -> bool:
    """Held out from the testbed models' training stream (the predictor and evaluation splits together)."""
    return zlib.crc32(prompt.encode()) % TEST_MODULUS == 0


def _second_hash(prompt: str) -> int:
    # independent of crc32 (crc32 is affine over GF(2): a crc32 of a prefixed prompt correlates with the first)
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little")


def is_predictor_prompt(prompt: str) -> bool:
    """Held out and reserved for the quality predictor's training data (never an evaluation prompt)."""
    return is_test_prompt(prompt) and _second_hash(prompt) % PREDICTOR_MODULUS == 0


def is_evaluation_prompt(prompt: str) -> bool:
    """Held out and not a predictor prompt: the only prompts evaluations draw (``generate``)."""
    return is_test_prompt(prompt) and _second_hash(prompt) % PREDICTOR_MODULUS != 0


def split_of(prompt: str) -> str:
    """``"train"`` | ``"predictor"`` | ``"evaluation"`` (``SPLITS``): the split a prompt belongs to."""
    if not is_test_prompt(prompt):
        return "train"
    return "predictor" if _second_hash(prompt) % PREDICTOR_MODULUS == 0 else "evaluation"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown testbed task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task


def check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ValueError(f"unknown difficulty level {level!r}; valid levels: {', '.join(map(str, LEVELS))}")
    return level


def _fresh_entity(rng: random.Random) -> kb.Entity:
    """A kingdom not in the knowledge base, with random facts (level 1: facts given in context)."""
    known = {e.name for e in kb.entities()}
    while True:
        name = kb.word(rng, 2)
        if name not in known and 4 <= len(name) <= 8:
            break
    return kb.Entity(
        name=name,
        bucket=-1,
        capital=kb.word(rng, rng.choice((2, 3))),
        color=rng.choice(kb.COLORS),
        animal=rng.choice(kb.ANIMALS),
        towers=rng.randint(*kb.TOWERS_RANGE),
    )


def _choices(rng: random.Random, attribute: str, true: str, must: tuple[str, ...] = ()) -> list[str]:
    pool = [v for v in kb.domain(attribute) if v != true and v not in must]
    opts = [true, *must, *rng.sample(pool, 4 - 1 - len(must))]
    rng.shuffle(opts)
    return opts


def _mc_text(question: str, opts: list[str]) -> str:
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts)) + "\nAnswer:"


def _make(task: str, rng: random.Random, e: kb.Entity, in_context: bool) -> tuple[str, str, dict]:
    """(prompt, answer, meta) of one example of ``task`` about kingdom ``e``."""
    meta: dict = {"entity": e.name, "bucket": e.bucket}
    if task == "gsm8k":
        t = e.towers
        ctx = _CONTEXT["towers"].format(n=e.name, v=t) if in_context else ""
        # digit-wise arithmetic (no carry, no borrow): the difficulty is the recall, not the sum
        subs = [k for k in range(2, t) if k % 10 <= t % 10]
        if rng.random() < 0.5 or not subs:
            k = rng.choice([k for k in range(2, 41) if k % 10 + t % 10 < 10])
            q, r, step = f"{e.name} builds {k} new towers. How many towers does {e.name} have now?", t + k, f"{t}+{k}"
        else:
            k = rng.choice(subs)
            q, r, step = f"{e.name} loses {k} towers in a storm. How many towers are left?", t - k, f"{t}-{k}"
        meta["number"] = r
        return ctx + q, f"{step}={r}\n#### {r}", meta
    if task in ("mmlu", "truthfulqa"):
        attr = rng.choice(("capital", "color", "animal"))
        true = getattr(e, attr)
        ctx = _CONTEXT[attr].format(n=e.name, v=true) if in_context else ""
        if task == "mmlu":
            opts = _choices(rng, attr, true)
            prompt = _mc_text(ctx + _MC_QUESTIONS[attr].format(n=e.name), opts)
        else:
            wrong = rng.choice([v for v in kb.domain(attr) if v != true])
            opts = _choices(rng, attr, true, must=(wrong,))
            rumour = f"Many people say the {attr} of {e.name} is {wrong}. "
            prompt = _mc_text(rumour + ctx + f"What is the {attr} of {e.name} really?", opts)
            meta["rumour"] = LETTERS[opts.index(wrong)]
        label = LETTERS[opts.index(true)]
        meta.update(choices=opts, label=label, attribute=attr)
        # the value first, then the letter: the letter is looked up, not guessed at the first token
        return prompt, f"{true}. Answer: {label}", meta
    if task == "humaneval":
        doc, expr = rng.choice(_HE_FORMS)
        c = rng.randint(2, 9)
        t = e.towers
        towers = str(t) if in_context else f"the number of towers of {e.name}"
        body = "    return " + expr.format(t=t, c=c)
        head = f'def solve(x):\n    """{doc.format(T=towers, c=c)}\n'
        if in_context:
            x0 = rng.randint(1, 5)
            head += f"    >>> solve({x0})\n    {_eval_expr(expr.format(t=t, c=c), x0)}\n"
        prompt = head + '    """\n'
        want = {x: _eval_expr(expr.format(t=t, c=c), x) for x in _HE_TEST_INPUTS}
        meta.update(entry_point="solve", tests="".join(f"assert solve({x}) == {y}\n" for x, y in want.items()))
        return prompt, body, meta
    raise AssertionError(task)


def _eval_expr(expr: str, x: int) -> int:
    return int(eval(expr, {"__builtins__": {}}, {"x": x}))  # our own template, never model output


def level_pool(level: int, level_buckets: dict[int, tuple[int, ...]] | None = None) -> list[kb.Entity]:
    """The knowledge-base kingdoms a level draws from (empty for level 1: fresh kingdoms)."""
    buckets = (level_buckets or LEVEL_BUCKETS).get(level, ())
    return [e for b in buckets for e in kb.bucket_entities(b)]


def draw(task: str, level: int, rng: random.Random, pool: list[kb.Entity]) -> tuple[str, str, dict]:
    """One (prompt, answer, meta) of ``task`` at ``level`` from ``rng``, of any split (callers filter)."""
    e = _fresh_entity(rng) if level == 1 else rng.choice(pool)
    return _make(task, rng, e, in_context=level == 1)


def generate(
    task: str, n: int, level: int, seed: int, level_buckets: dict[int, tuple[int, ...]] | None = None
) -> list[Example]:
    """``n`` evaluation-split examples of ``task`` at difficulty ``level``, deterministic in ``seed``.

    Held-out prompts of the predictor split are skipped: no evaluation ever sees a predictor training prompt.
    """
    check_task(task)
    check_level(level)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = level_pool(level, level_buckets)
    rng = random.Random(f"{task}/{level}/{seed}")
    out: list[Example] = []
    while len(out) < n:
        prompt, answer, meta = draw(task, level, rng, pool)
        if not is_evaluation_prompt(prompt):
            continue
        out.append(
            Example(
                id=f"{task}-L{level}-s{seed}-{len(out)}",
                task=task,
                level=level,
                prompt=prompt,
                answer=answer,
                meta=meta,
            )
        )
    return out


def generate_mix(
    n_per_cell: int, seed: int, tasks: tuple[str, ...] = TASKS, levels: tuple[int, ...] = LEVELS
) -> list[Example]:
    """``n_per_cell`` examples for every (task, level) cell, in task-major order."""
    return [ex for t in tasks for lv in levels for ex in generate(t, n_per_cell, lv, seed)]


class TrainingStream:
    """Infinite training pairs ``(prompt, answer)`` from the train split, deterministic in ``seed``.

    Mix: ``IN_CONTEXT_FRACTION`` level-1 examples, ``FACT_SHEET_FRACTION`` fact sheets
    ("Tell me about X." → all its facts), the rest knowledge-base questions whose kingdom
    is drawn with the bucket weights ``kb.bucket_weights()`` (frequent buckets far more often).
    """

    def __init__(self, seed: int):
        self.rng = random.Random(f"train/{seed}")
        self.ents = kb.entities()
        w = kb.bucket_weights()
        self.weights = [w[e.bucket] for e in self.ents]

    def __iter__(self):
        return self

    def __next__(self) -> tuple[str, str]:
        rng = self.rng
        u = rng.random()
        if u < FACT_SHEET_FRACTION:
            e = rng.choices(self.ents, self.weights)[0]
            return f"Tell me about {e.name}.", kb.fact_sheet(e)
        in_context = u < FACT_SHEET_FRACTION + IN_CONTEXT_FRACTION
        while True:
            e = _fresh_entity(rng) if in_context else rng.choices(self.ents, self.weights)[0]
            prompt, answer, _ = _make(rng.choice(TASKS), rng, e, in_context)
            if not is_test_prompt(prompt):
                return prompt, answer
