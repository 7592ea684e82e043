"""Plain data between the judge and the candidate's process: exact round trips, strict decoding, framing."""
import collections
import json
import math
import os
import random

import pytest

from asd.eval import _sandbox_wire as wire


def _random_value(rng: random.Random, depth: int = 0):
    leaves = [
        None, True, False, rng.randint(-10, 10), rng.randint(-(2**70), 2**70), 2**53, -(2**53), rng.random() * 1e6,
        -0.0, float("inf"), float("-inf"), 1e300, complex(rng.random(), -rng.random()),
        "".join(rng.choice("aé\u2212\U0001f600\\\"'\n\x00") for _ in range(rng.randint(0, 6))), "\udc80",
        bytes(rng.randrange(256) for _ in range(rng.randint(0, 5))),
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset"])
    n = rng.randint(0, 4)
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(n)]
    if kind == "tuple":
        return tuple(_random_value(rng, depth + 1) for _ in range(n))
    hashable = [rng.choice(leaves[:14]) for _ in range(n)] + [tuple(rng.choice(leaves[:4]) for _ in range(2))]
    if kind == "dict":
        return {k: _random_value(rng, depth + 1) for k in hashable}
    return set(hashable) if kind == "set" else frozenset(hashable)


def _same(a, b) -> bool:
    """Equal with exact types throughout (and -0.0 distinct from 0.0, nan equal to nan)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_round_trip_keeps_values_and_exact_types():
    rng = random.Random(0)
    for _ in range(2000):
        v = _random_value(rng)
        tree = wire.encode(v)
        back = wire.decode(json.loads(json.dumps(tree)))
        assert _same(back, v), (v, back)
    nan = wire.decode(json.loads(json.dumps(wire.encode(float("nan")))))
    assert math.isnan(nan)
    assert wire.decode(wire.encode((1, [1]))) != [1, [1]]  # a tuple stays a tuple


def test_subclasses_travel_as_their_builtin_value():
    class AlwaysEqualInt(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

        def __int__(self):
            return 5  # ignored: the base type's own value is read

    class Shouting(str):
        def __str__(self):
            return "LOUD"

    point = collections.namedtuple("point", "x y")
    cases = [
        (AlwaysEqualInt(-3), -3),
        (Shouting("quiet"), "quiet"),
        (collections.Counter("abca"), {"a": 2, "b": 1, "c": 1}),
        (collections.OrderedDict(a=1), {"a": 1}),
        (collections.defaultdict(list, a=[1]), {"a": [1]}),
        (point(1, 2), (1, 2)),
    ]
    for value, want in cases:
        got = wire.decode(wire.encode(value))
        assert _same(got, want), (value, got)


def test_not_plain_data_is_refused_by_name():
    class Thing:
        pass

    def gen():
        yield 1

    loop: list = []
    loop.append(loop)
    for value, name in [(gen(), "generator"), (Thing(), "Thing"), (len, "builtin_function_or_method"),
                        ([object()], "object"), (loop, "nested deeper"), (bytearray(b"x"), "bytearray")]:
        with pytest.raises(wire.NotPlain, match=name):
            wire.encode(value)


@pytest.mark.parametrize("tree", [
    {"t": [1], "l": []},  # two keys
    {"q": [1]},  # unknown tag
    {"t": 1},  # payload of the wrong kind
    {"s": [[1]]},  # unhashable set element
    {"d": [[[1], 2]]},  # unhashable key
    {"d": [[1]]},  # not a pair
    {"i": "12"},  # not hex
    {"x": "1.5"},  # not a special float
    {"b": "abc"},  # odd hex
    {"c": ["a", 1]},  # complex of a str
    {},
])
def test_decode_is_strict(tree):
    with pytest.raises(wire.Malformed):
        wire.decode(tree)


def test_decode_refuses_deep_nesting():
    tree: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        tree = [tree]
    with pytest.raises(wire.Malformed, match="deeper"):
        wire.decode(tree)


def _pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def test_messages_and_their_limits():
    r = _pipe_with(wire.dumps({"seq": 1, "value": [1]}) + wire.dumps({"seq": 2}))
    assert wire.read(r, 100) == {"seq": 1, "value": [1]} and wire.read(r, 100) == {"seq": 2}
    assert wire.read(r, 100) is None  # EOF between messages
    os.close(r)
    for data, match in [
        (b'{"nonce": "x", "status": "ok"}\n', "bad message header"),
        (b"0000000009\n[1, 2", "cut short"),
        (b"00000", "cut short"),
        (b"0000000200\n" + b" " * 200, "more than the limit"),
        (b"0000000003\nNaN", "not JSON"),
        (b"0000000002\n\xff\xfe", "not JSON"),
    ]:
        r = _pipe_with(data)
        with pytest.raises(wire.Malformed, match=match):
            wire.read(r, 100)
        os.close(r)
