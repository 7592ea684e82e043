"""Strict YAML reading: lines of every key, duplicates (merge keys included), alias expansion limits, encodings."""
from __future__ import annotations

import pytest

from asd.config_loader import ConfigError
from asd.config_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, parse, read_doc


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse(text, "f.yaml")
    return str(e.value)


def test_lines_of_keys_and_list_items():
    doc = parse("# c\njobs:\n  output_dir: x\n  setup:\n    - a\n    - b\npolicy: {lam: 1}\n", "f.yaml")
    assert doc.data == {"jobs": {"output_dir": "x", "setup": ["a", "b"]}, "policy": {"lam": 1}}
    assert doc.lines == {"": 2, "jobs": 2, "jobs.output_dir": 3, "jobs.setup": 4, "jobs.setup[0]": 5,
                         "jobs.setup[1]": 6, "policy": 7, "policy.lam": 7}


def test_crlf_and_bom_are_text():
    doc = parse("\ufeffjobs:\r\n  seed: 1\r\n  shards: 2\r\n", "f.yaml")
    assert doc.data == {"jobs": {"seed": 1, "shards": 2}} and doc.lines["jobs.shards"] == 3


def test_merge_key_override_is_allowed_and_lines_point_where_values_are_written():
    doc = parse("base: &b {seed: 1, shards: 2}\njobs:\n  <<: *b\n  seed: 3\n", "f.yaml")
    assert doc.data["jobs"] == {"seed": 3, "shards": 2}
    assert doc.lines["jobs.seed"] == 4 and doc.lines["jobs.shards"] == 1


@pytest.mark.parametrize("text,msg", [
    ("a: 1\nb: 2\na: 3\n", "f.yaml:3: duplicate key 'a' (lines 1 and 3)"),
    ("a:\n  x: 1\n  y: 2\n  x: 1\n", "f.yaml:4: duplicate key 'x' (lines 2 and 4)"),  # same value: still twice
    ("a: {x: 1, x: 2}\n", "f.yaml:1: duplicate key 'x' (lines 1 and 1)"),
    ("a:\n  1: x\n  0x1: y\n", "f.yaml:3: duplicate key 1 (lines 2 and 3)"),  # the same int written two ways
    ("a:\n  yes: x\n  true: y\n", "f.yaml:3: duplicate key True (lines 2 and 3)"),
    ("l:\n  - {a: 1, a: 2}\n", "f.yaml:2: duplicate key 'a' (lines 2 and 2)"),  # inside a list
    ("b: &b {x: 1}\na:\n  <<: *b\n  <<: *b\n", "f.yaml:4: duplicate merge key '<<' (lines 3 and 4)"),
    ("p: &p {x: 1}\nq: &q {x: 2}\na:\n  <<: [*p, *q]\n",
     "f.yaml:4: key 'x' merged twice (from lines 1 and 2): which one applies depends on the order of '<<'; "
     "write it once"),
    ("p: &p {x: 1}\nq: &q {<<: *p}\na:\n  <<: [*p, *q]\n",  # q brings x from p: merged twice as well
     "f.yaml:4: key 'x' merged twice (from lines 1 and 1): which one applies depends on the order of '<<'; "
     "write it once"),
    ("a:\n  <<: [1, 2]\n", "f.yaml:2: '<<' merges mappings only (a mapping or a list of them)"),
])
def test_duplicates(text, msg):
    assert _err(text) == msg


def test_different_keys_that_look_alike_are_not_duplicates():
    assert parse("a:\n  '1': x\n  1: y\n", "f.yaml").data == {"a": {"1": "x", 1: "y"}}


def test_alias_use_within_the_limit_expands():
    doc = parse("s: &s [a, b]\njobs:\n  setup: *s\n  other: *s\n", "f.yaml")
    assert doc.data["jobs"] == {"setup": ["a", "b"], "other": ["a", "b"]}


@pytest.mark.parametrize("levels", [6, 9, 30])
def test_alias_bombs_are_refused_before_expanding(levels):
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, levels + 1))
    msg = _err(text)  # 10**30 values if expanded: refused while the file is a graph of shared nodes
    assert msg.startswith("f.yaml:") and f"more than {MAX_NODES:,} values once aliases are expanded" in msg
    assert len(msg) < 150


def test_recursive_alias():
    assert _err("a: &a [1, *a]\n") == "f.yaml:1: a recursive alias (a node that contains itself)"
    assert _err("a: &a {b: {c: *a}}\n") == "f.yaml:1: a recursive alias (a node that contains itself)"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2000, 100_000])
def test_deep_nesting(depth):
    msg = _err("a: " + "[" * depth + "]" * depth + "\n")
    assert msg.startswith("f.yaml") and msg.endswith(f"nested too deeply (more than {MAX_DEPTH} levels)")


def test_depth_within_the_limit_is_fine():
    d = MAX_DEPTH - 2
    assert parse("a: " + "[" * d + "]" * d + "\n", "f.yaml").data["a"]


@pytest.mark.parametrize("text,msg", [
    ("", "f.yaml: no sections: the file is empty or holds only comments"),
    ("# nothing\n   \n", "f.yaml: no sections: the file is empty or holds only comments"),
    ("---\n", "f.yaml: no sections: the file is empty or holds only comments"),
    ("{}\n", "f.yaml:1: no sections: the top-level mapping is empty"),
    ("- a\n", "f.yaml:1: the top level must be a mapping of sections, got a list"),
    ("3.5\n", "f.yaml:1: the top level must be a mapping of sections, got the value '3.5'"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2: invalid YAML: expected a single document in the stream, but found another document"),
    ("a: [1,\n", "f.yaml:2: invalid YAML: expected the node content, but found '<stream end>'"),
    ("a: 1\n\tb: 2\n", "f.yaml:2: invalid YAML: found character '\\t' that cannot start any token"),
    ("a: \x07\n", "f.yaml:1: invalid YAML: unacceptable character #x0007: special characters are not allowed"),
    ("a: *nope\n", "f.yaml:1: invalid YAML: found undefined alias 'nope'"),
    ("? [1, 2]\n: 3\n", "f.yaml:1: a key must be a plain value, not a list or mapping"),
    ("a: " + "1" * 41 + "\n", "f.yaml:1: an integer of 41 characters: too large for any field"),
])
def test_shapes_and_syntax(text, msg):
    assert _err(text) == msg


def test_files(tmp_path):
    p = tmp_path / "c.yaml"
    with pytest.raises(ConfigError, match=f"^{p}: config file not found$"):
        read_doc(p)
    p.write_bytes("jobs:\n  x: é\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r":1: a NUL byte: not UTF-8 YAML text \(a binary or UTF-16 file\?\)$"):
        read_doc(p)
    p.write_bytes(b"jobs:\n  a: 1\n  b: caf\xe9\n")  # Latin-1
    with pytest.raises(ConfigError, match=r"c.yaml:3: not UTF-8 text \(byte 0xe9 at column 9\)$"):
        read_doc(p)
    p.write_bytes(b"a: " + b"x" * MAX_BYTES)
    with pytest.raises(ConfigError, match=f"c.yaml: {MAX_BYTES + 3:,} bytes; a config file is at most {MAX_BYTES:,}"):
        read_doc(p)
    p.write_text("jobs:\n  seed: 1\n")
    assert read_doc(p).data == {"jobs": {"seed": 1}} and read_doc(p).source == str(p)
