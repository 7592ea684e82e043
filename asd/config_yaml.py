"""Read a YAML config file strictly: one top-level mapping, each key once, bounded size, lines kept.

``read_doc(path)`` returns a :class:`YamlDoc` (the data and the line of every key) or raises a
``ConfigError`` whose every line names the file and, where there is one, the line:

- bytes that are not UTF-8 text (a NUL byte, invalid UTF-8) → the line of the first bad byte;
- a file larger than ``MAX_BYTES``; nesting deeper than ``MAX_DEPTH``; an integer literal of more than
  ``MAX_INT_CHARS`` characters (no int64 has that many);
- aliases that expand to more than ``MAX_NODES`` nodes (a "billion laughs" file) or refer to themselves:
  refused while the file is still a graph of shared nodes, before anything is expanded;
- a key given twice in one mapping, a whole section included (both lines named); merge keys
  (``<<: *base``): a key of the mapping itself overrides a merged one (that is what merging is for), but
  two ``<<`` entries, or one key brought in by two merged mappings, are duplicates;
- an empty file, one holding only comments, or a top level that is not a mapping.

Lines are 1-based; ``YamlDoc.lines`` maps dotted paths (``hierarchy.stages[2].model``) to the line of
the key (or list item), merged keys to the line where they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from asd.config_loader import ConfigError, short_repr, short_text

MAX_BYTES = 1 << 16  # 64 KiB: 16x the largest shipped config (~4 KB); bounds the time to parse any file
MAX_NODES = 100_000  # nodes after alias expansion (every use of an alias counted)
MAX_DEPTH = 64  # nested mappings / lists
MAX_INT_CHARS = 40  # an int64 has at most 20 characters (sign included); leaves room for '_' and 0x/0o
MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"
NULL_TAG = "tag:yaml.org,2002:null"


@dataclass
class YamlDoc:
    """A config file's top-level mapping and the line of every key (dotted path → 1-based line)."""

    source: str
    data: dict
    lines: dict[str, int] = field(default_factory=dict)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader; the checks run on the composed node graph before construction."""


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def read_doc(path: str | Path) -> YamlDoc:
    """Read ``path`` strictly (module docstring); ConfigError naming the file (and line) otherwise."""
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise ConfigError(f"{src}: config file not found")
    if not p.is_file():
        raise ConfigError(f"{src}: not a regular file")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{src}: {size:,} bytes; a config file is at most {MAX_BYTES:,} bytes")
        raw = p.read_bytes()[: MAX_BYTES + 1]
    except OSError as e:
        raise ConfigError(f"{src}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{src}: more than {MAX_BYTES:,} bytes; a config file is at most that")
    text = _decode(raw, src)
    return parse(text, src)


def _decode(raw: bytes, src: str) -> str:
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ConfigError(f"{src}:{line}: a NUL byte: not UTF-8 YAML text (a binary or UTF-16 file?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{src}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col})") from None


def parse(text: str, src: str = "<string>") -> YamlDoc:
    """Parse YAML ``text`` strictly (module docstring); ``src`` names it in messages."""
    try:
        loader = _Loader(text)  # the reader refuses control characters here
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_message(e, text, src)) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise ConfigError(_yaml_message(e, text, src)) from None
        except RecursionError:
            raise ConfigError(f"{src}: nested too deeply (more than {MAX_DEPTH} levels)") from None
        if node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG and not node.value):
            raise ConfigError(f"{src}: no sections: the file is empty or holds only comments")
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else f"the value {short_repr(node.value)}"
            raise ConfigError(f"{src}:{_line(node)}: the top level must be a mapping of sections, got {kind}")
        _Checker(loader, src).check(node)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as e:
            raise ConfigError(_yaml_message(e, text, src)) from None
        except (ValueError, OverflowError, TypeError) as e:  # e.g. a value PyYAML cannot convert
            raise ConfigError(f"{src}: {short_text(str(e))}") from None
    finally:
        loader.dispose()
    if not data:
        raise ConfigError(f"{src}:{_line(node)}: no sections: the top-level mapping is empty")
    return YamlDoc(src, data, _lines(node))


def _yaml_message(e: yaml.YAMLError, text: str, src: str) -> str:
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif getattr(e, "position", None) is not None:  # ReaderError: an unacceptable character
        line = text.count("\n", 0, e.position) + 1
    else:
        line = None
    problem = " ".join(str(getattr(e, "problem", None) or str(e).splitlines()[0]).split())
    context = getattr(e, "context", None)
    if context and problem.startswith("but "):  # "expected a single document in the stream, but found another"
        problem = f"{context}, {problem}"
    where = f"{src}:{line}" if line else src
    return f"{where}: invalid YAML: {problem if len(problem) <= 120 else problem[:117] + '...'}"


class _Checker:
    """One pass over the composed node graph: size after alias expansion, cycles, depth, duplicates."""

    def __init__(self, loader: _Loader, src: str):
        self.loader, self.src = loader, src
        self.size: dict[int, int] = {}  # id(node) → expanded node count (memo: each shared node once)
        self.open: set[int] = set()  # nodes on the current path (a cycle = a recursive alias)
        self.keysets: dict[int, dict[Any, int]] = {}  # id(mapping) → its effective keys → line

    def check(self, root: Node) -> None:
        self._size(root, 0)

    def _fail(self, node: Node, what: str) -> ConfigError:
        return ConfigError(f"{self.src}:{_line(node)}: {what}")

    def _size(self, node: Node, depth: int) -> int:
        nid = id(node)
        if nid in self.size:
            return self.size[nid]
        if nid in self.open:
            raise self._fail(node, "a recursive alias (a node that contains itself)")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nested too deeply (more than {MAX_DEPTH} levels)")
        self.open.add(nid)
        n = 1
        if isinstance(node, ScalarNode):
            if node.tag == INT_TAG and len(node.value) > MAX_INT_CHARS:
                raise self._fail(node, f"an integer of {len(node.value)} characters: too large for any field")
        elif isinstance(node, SequenceNode):
            for item in node.value:
                n += self._size(item, depth + 1)
                self._limit(node, n)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                n += self._size(k, depth + 1) + self._size(v, depth + 1)
                self._limit(node, n)
            self._keys(node)
        self.open.discard(nid)
        self.size[nid] = n
        return n

    def _limit(self, node: Node, n: int) -> None:
        if n > MAX_NODES:
            raise self._fail(
                node,
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?); refused before expanding",
            )

    def _key(self, k: Node) -> Any:
        if not isinstance(k, ScalarNode):
            raise self._fail(k, "a key must be a plain value, not a list or mapping")
        try:
            key = self.loader.construct_object(k)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            raise self._fail(k, f"invalid key: {short_text(str(e))}") from None
        return key

    def _keys(self, node: MappingNode) -> dict[Any, int]:
        """The mapping's effective keys (its own and merged ones) → line; duplicates are errors."""
        got = self.keysets.get(id(node))
        if got is not None:
            return got
        own: dict[Any, int] = {}
        merge_line = None
        merged: dict[Any, int] = {}
        for k, v in node.value:
            if k.tag == MERGE_TAG:
                if merge_line is not None:
                    raise self._fail(k, f"duplicate merge key '<<' (lines {merge_line} and {_line(k)})")
                merge_line = _line(k)
                sources = v.value if isinstance(v, SequenceNode) else [v]
                for s in sources:
                    if not isinstance(s, MappingNode):
                        raise self._fail(s, "'<<' merges mappings only (a mapping or a list of them)")
                    for key, line in self._keys(s).items():
                        if key in merged:
                            raise self._fail(
                                k,
                                f"key {short_repr(key)} merged twice (from lines {merged[key]} and {line}): "
                                "which one applies depends on the order of '<<'; write it once",
                            )
                        merged[key] = line
                continue
            key = self._key(k)
            if key in own:
                raise self._fail(k, f"duplicate key {short_repr(key)} (lines {own[key]} and {_line(k)})")
            own[key] = _line(k)
        out = {**merged, **own}
        self.keysets[id(node)] = out
        return out


def _lines(root: MappingNode) -> dict[str, int]:
    """Dotted path → line, from the node graph after construction (merges are flattened into it by then)."""
    out: dict[str, int] = {"": _line(root)}
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:  # bounded: the graph expands to at most MAX_NODES nodes
        node, path = stack.pop()
        if isinstance(node, MappingNode):
            last = {k.value: (k, v) for k, v in node.value if k.tag != MERGE_TAG and isinstance(k, ScalarNode)}
            for k, v in last.values():  # a key written in the mapping comes after the merged ones: it wins
                p = f"{path}.{k.value}" if path else str(k.value)
                out[p] = _line(k)
                stack.append((v, p))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                p = f"{path}[{i}]"
                out[p] = _line(item)
                stack.append((item, p))
    return out
