"""Testbed prompts of the **predictor** split: the quality predictor's training prompts.

A predictor prompt is held out from the testbed models' training stream (``crc32 % 8 == 0``) and never an
evaluation prompt (``blake2b-64 % 2 == 0`` within the held-out residue; ``asd.testbed.tasks.split_of``).
Every evaluation draw (``tasks.generate``) skips them, so the predictor never trains on a prompt the
cascade is evaluated on.

Some (task, level) cells have few distinct prompts: the level's kingdoms, the templates and their numbers
make a finite set (``FINITE_CELLS``), e.g. ~190 predictor prompts for gsm8k at level 5. ``distinct_count``
gives the exact count of such a cell (by enumeration) and None for the others (far more than any run
needs). ``CellSequence`` lists a cell's predictor prompts without repetition in a seeded order; once a
finite cell is exhausted it starts over in a fresh seeded order (``repeat`` counts the rounds), so a run
asks for any number of samples per cell and each repeated prompt is marked (docs/predictor_data.md).

Example::

    >>> ex, rep = prompt_for_sample(7, seed=0)
    >>> is_predictor_prompt(ex.prompt), rep
    (True, 0)
"""

from __future__ import annotations

import random
from functools import lru_cache

from asd.testbed import kb
from asd.testbed import tasks as T
from asd.testbed.tasks import Example, is_predictor_prompt

# cells whose prompts form a small finite set (enumerated exactly by _enumerate)
FINITE_CELLS = {("gsm8k", lv) for lv in (2, 3, 4, 5)} | {("humaneval", lv) for lv in T.LEVELS}
MAX_DRAWS_PER_PROMPT = 200_000  # a stream that finds no new prompt in this many draws is a bug, not bad luck


def cells(tasks: tuple[str, ...] = T.TASKS, levels: tuple[int, ...] = T.LEVELS) -> list[tuple[str, int]]:
    """The (task, level) cells in sample order: sample id i belongs to cell ``i % len(cells)``."""
    for t in tasks:
        T.check_task(t)
    for lv in levels:
        T.check_level(lv)
    if not tasks or not levels:
        raise ValueError("need at least one task and one level")
    return [(t, lv) for t in tasks for lv in levels]


def _enumerate(task: str, level: int) -> list[str]:
    """Every prompt ``tasks.draw`` can produce for a finite cell (any split), mirroring ``tasks._make``."""
    out = []
    if task == "gsm8k" and level >= 2:
        for e in T.level_pool(level):
            t = e.towers
            for k in range(2, 41):
                if k % 10 + t % 10 < 10:
                    out.append(f"{e.name} builds {k} new towers. How many towers does {e.name} have now?")
            for k in range(2, t):
                if k % 10 <= t % 10:
                    out.append(f"{e.name} loses {k} towers in a storm. How many towers are left?")
    elif task == "humaneval" and level >= 2:
        for e in T.level_pool(level):
            for doc, _ in T._HE_FORMS:
                for c in range(2, 10):
                    towers = f"the number of towers of {e.name}"
                    out.append(f'def solve(x):\n    """{doc.format(T=towers, c=c)}\n    """\n')
    elif task == "humaneval" and level == 1:  # the fact is in the prompt, the kingdom's name is not
        for t in range(kb.TOWERS_RANGE[0], kb.TOWERS_RANGE[1] + 1):
            for doc, expr in T._HE_FORMS:
                for c in range(2, 10):
                    for x0 in range(1, 6):
                        y = T._eval_expr(expr.format(t=t, c=c), x0)
                        doc_t = doc.format(T=str(t), c=c)
                        out.append(f'def solve(x):\n    """{doc_t}\n    >>> solve({x0})\n    {y}\n    """\n')
    else:
        raise AssertionError((task, level))
    return out


@lru_cache(maxsize=64)
def distinct_count(task: str, level: int) -> int | None:
    """Distinct predictor-split prompts of a cell: exact for ``FINITE_CELLS``, None (unbounded for any run:
    fresh kingdom names or ordered option lists give far more than 10^6) for the others."""
    T.check_task(task)
    T.check_level(level)
    if (task, level) not in FINITE_CELLS:
        return None
    return sum(map(is_predictor_prompt, set(_enumerate(task, level))))


class CellSequence:
    """The predictor prompts of one cell in a seeded order, distinct until a finite cell is exhausted.

    ``get(j)`` → (Example, repeat): the j-th prompt of the cell's sequence; ``repeat`` = how many times the
    cell's whole pool was used before (0 while prompts are fresh). Lazily extended; deterministic in seed.
    """

    def __init__(self, task: str, level: int, seed: int):
        self.task, self.level, self.seed = task, level, seed
        self.rng = random.Random(f"predictor/{task}/{level}/{seed}")
        self.pool = T.level_pool(level)
        self.items: list[Example] = []
        self.seen: set[str] = set()
        self.size = distinct_count(task, level)  # None: never exhausted
        self._orders: dict[int, list[int]] = {}

    def _extend(self, n: int) -> None:
        """Draw until ``n`` distinct predictor prompts are known (or the finite pool is complete)."""
        misses = 0
        while len(self.items) < n and (self.size is None or len(self.items) < self.size):
            prompt, answer, meta = T.draw(self.task, self.level, self.rng, self.pool)
            if not is_predictor_prompt(prompt) or prompt in self.seen:
                misses += 1
                if misses > MAX_DRAWS_PER_PROMPT:
                    raise AssertionError(f"no new predictor prompt for {self.task}/L{self.level} after {misses} draws")
                continue
            misses = 0
            self.seen.add(prompt)
            j = len(self.items)
            self.items.append(
                Example(f"{self.task}-L{self.level}-p{self.seed}-{j}", self.task, self.level, prompt, answer, meta)
            )

    def get(self, j: int) -> tuple[Example, int]:
        if j < 0:
            raise ValueError(f"index must be >= 0, got {j}")
        if self.size is None or j < self.size:
            self._extend(j + 1)
            return self.items[j], 0
        self._extend(self.size)
        rep, i = divmod(j, self.size)
        if rep not in self._orders:  # round r > 0: the whole pool again, in a fresh seeded order
            order = list(range(self.size))
            random.Random(f"predictor/{self.task}/{self.level}/{self.seed}/round{rep}").shuffle(order)
            self._orders[rep] = order
        return self.items[self._orders[rep][i]], rep


_SEQUENCES: dict[tuple[str, int, int], CellSequence] = {}


def sequence(task: str, level: int, seed: int) -> CellSequence:
    """The cell's sequence, cached per process (array tasks call the step once per batch)."""
    key = (task, level, seed)
    if key not in _SEQUENCES:
        _SEQUENCES[key] = CellSequence(task, level, seed)
    return _SEQUENCES[key]


def capacity(cell_list: list[tuple[str, int]], num_samples: int) -> None:
    """ValueError when ``num_samples`` distinct prompts cannot be had from ``cell_list`` (all cells finite)."""
    caps = [distinct_count(t, lv) for t, lv in cell_list]
    if all(c is not None for c in caps) and num_samples > sum(c for c in caps if c is not None):
        raise ValueError(
            f"the cells {cell_list} hold only {sum(c for c in caps if c is not None)} distinct predictor prompts, "
            f"fewer than num_samples={num_samples}; lower num_samples, add cells, or set repeats: true"
        )


def slot(sample_id: int, cell_list: list[tuple[str, int]], repeats: bool) -> tuple[int, int]:
    """(cell index, position j in that cell's sequence) of a sample.

    ``repeats``: cell ``i % C``, j = ``i // C`` (balanced cells; an exhausted finite cell repeats). Otherwise
    round-robin over the cells that still have fresh prompts: round r gives one sample to every cell with more
    than r distinct prompts, in cell order, so finite cells stop at their count and every prompt is distinct.
    Depends on the sample id and the cells only (not on the run's size): any sharding gives the same data.
    """
    C = len(cell_list)
    if repeats:
        return sample_id % C, sample_id // C
    caps = [distinct_count(t, lv) for t, lv in cell_list]
    i = sample_id
    finite = sorted({c for c in caps if c is not None})
    bounds = [0, *finite]
    for lo, hi in zip(bounds, [*finite, None]):  # rounds [lo, hi) have the same set of active cells
        active = [c for c, cap in enumerate(caps) if cap is None or cap > lo]
        if not active:
            break
        span = None if hi is None else (hi - lo) * len(active)
        if span is None or i < span:
            dr, k = divmod(i, len(active))
            return active[k], lo + dr
        i -= span
    raise ValueError(f"sample {sample_id} is beyond the distinct prompts the cells {cell_list} hold")


def prompt_for_sample(
    sample_id: int,
    seed: int,
    tasks: tuple[str, ...] = T.TASKS,
    levels: tuple[int, ...] = T.LEVELS,
    repeats: bool = False,
) -> tuple[Example, int]:
    """(Example, repeat) of one sample: its cell and position (``slot``), then that cell's sequence."""
    cs = cells(tasks, levels)
    c, j = slot(sample_id, cs, repeats)
    task, level = cs[c]
    return sequence(task, level, seed).get(j)
