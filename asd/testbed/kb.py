"""The testbed's fixed synthetic knowledge base: kingdoms and their facts.

Every testbed model memorises this table during training, so recall of its facts is
capacity- and exposure-bound: bigger models (fixed step budget) remember more of the
*rare* facts. Entities are split into ``NUM_BUCKETS`` frequency buckets of
``PER_BUCKET`` entities; in the training stream an entity of bucket ``b`` appears with
weight ``BUCKET_DECAY ** -b`` relative to bucket 0 (bucket 0 = most frequent). Difficulty
levels 2..5 of the tasks draw their entity from a set of buckets (``asd.testbed.tasks.LEVEL_BUCKETS``).

The table is a pure function of ``KB_SEED``: changing anything here changes what the
committed weights know, so it is frozen together with them.

Facts per kingdom: ``capital`` (a unique name), ``color`` (one of ``COLORS``), ``animal``
(one of ``ANIMALS``), ``towers`` (an int in ``TOWERS_RANGE``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

KB_SEED = 20261126
NUM_BUCKETS = 10
PER_BUCKET = 40
BUCKET_DECAY = 2.0  # per-entity training frequency falls by this factor per bucket
COLORS = ["red", "blue", "green", "gold", "black", "white", "gray", "pink", "brown", "violet"]
ANIMALS = ["fox", "owl", "bear", "wolf", "hawk", "deer", "lynx", "crow", "seal", "hare"]
TOWERS_RANGE = (10, 59)  # inclusive
ATTRIBUTES = ("capital", "color", "animal", "towers")

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "st", "sk"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m"]


@dataclass(frozen=True)
class Entity:
    """One kingdom of the knowledge base."""

    name: str
    bucket: int  # frequency bucket, 0 = most frequent in training
    capital: str
    color: str
    animal: str
    towers: int


def word(rng: random.Random, syllables: int) -> str:
    w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
    return w.capitalize()


@lru_cache(maxsize=1)
def entities() -> tuple[Entity, ...]:
    """All ``NUM_BUCKETS * PER_BUCKET`` kingdoms, bucket-major (deterministic)."""
    rng = random.Random(KB_SEED)
    used: set[str] = set()

    def fresh(syllables: int) -> str:
        while True:
            w = word(rng, syllables)
            if w not in used and 4 <= len(w) <= 8:
                used.add(w)
                return w

    out = []
    for b in range(NUM_BUCKETS):
        for _ in range(PER_BUCKET):
            out.append(
                Entity(
                    name=fresh(2),
                    bucket=b,
                    capital=fresh(rng.choice((2, 3))),
                    color=rng.choice(COLORS),
                    animal=rng.choice(ANIMALS),
                    towers=rng.randint(*TOWERS_RANGE),
                )
            )
    return tuple(out)


def bucket_entities(bucket: int) -> tuple[Entity, ...]:
    if not 0 <= bucket < NUM_BUCKETS:
        raise ValueError(f"unknown bucket {bucket}; valid: 0..{NUM_BUCKETS - 1}")
    return entities()[bucket * PER_BUCKET : (bucket + 1) * PER_BUCKET]


def bucket_weights() -> list[float]:
    """Training weight of one entity of each bucket (bucket 0 = 1.0)."""
    return [BUCKET_DECAY**-b for b in range(NUM_BUCKETS)]


def domain(attribute: str, ents: tuple[Entity, ...] | None = None) -> list[str]:
    """All values an attribute can take (capitals: those of the knowledge base)."""
    if attribute == "color":
        return list(COLORS)
    if attribute == "animal":
        return list(ANIMALS)
    if attribute == "capital":
        return [e.capital for e in (ents or entities())]
    if attribute == "towers":
        return [str(t) for t in range(TOWERS_RANGE[0], TOWERS_RANGE[1] + 1)]
    raise ValueError(f"unknown attribute {attribute!r}; valid: {', '.join(ATTRIBUTES)}")


def fact_sheet(e: Entity) -> str:
    """One line stating all facts of ``e`` (used as an auxiliary training document)."""
    return f"{e.name}: capital {e.capital}, color {e.color}, animal {e.animal}, towers {e.towers}."
