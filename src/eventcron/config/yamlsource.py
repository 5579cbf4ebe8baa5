"""Safe YAML reading into located nodes.

The schedule file comes from humans and sometimes from worse. This module turns bytes into a
small tree of nodes that remember their line and column, and refuses hostile input early and
in bounded time and memory: oversized files, invalid UTF-8, control characters, nesting
thousands deep, alias bombs ("billion laughs") and recursive aliases. Nothing here constructs
Python objects from tags, so no YAML can run code.

Scalars keep their source text; typing happens where the schema knows what a key expects
(:mod:`eventcron.config`), or with :func:`to_json` for free-form data, which follows the
YAML 1.2 core schema (``yes`` stays a string; ``007`` is the integer 7, quote it otherwise).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eventcron.problems import InvalidInput, Problem

MAX_FILE_BYTES = 4 * 1024 * 1024  # bytes: twice ten thousand schedules; audiences go in CSV
MAX_DEPTH = 64  # levels of nesting: far beyond any real schedule, far below the C stack
MAX_WEIGHT = 2_000_000  # nodes after alias expansion: stops "billion laughs" bombs early

try:  # libyaml is ~10x faster; the pure-Python parser is the fallback
    _Parser: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Parser = yaml.SafeLoader

# Characters YAML 1.2 forbids in a stream (control characters other than tab, LF, CR, NEL).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


@dataclass(eq=False, slots=True)
class Node:
    """A located YAML node: 1-based ``line`` and ``col`` of where it starts."""

    line: int
    col: int
    weight: int = 1  # nodes in this subtree, counting alias expansions


@dataclass(eq=False, slots=True)
class Scalar(Node):
    """A scalar: ``text`` as written (after YAML unescaping), ``style`` ``None`` when plain."""

    text: str = ""
    style: str | None = None
    tag: str | None = None
    end_line: int = 0

    @property
    def plain(self) -> bool:
        """True for an unquoted scalar, which YAML types implicitly."""
        return self.style is None and self.tag is None

    @property
    def is_null(self) -> bool:
        """True for a plain ``~``, ``null`` or an empty value."""
        return self.plain and self.text in _NULLS

    def text_col(self) -> int:
        """Column of the first character of the text itself (after an opening quote)."""
        return self.col + (1 if self.style in ("'", '"') else 0)


@dataclass(eq=False, slots=True)
class SequenceNode(Node):
    """A sequence of nodes."""

    items: list[Node] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class MappingNode(Node):
    """A mapping, as its pairs in file order (duplicates and merges resolved by :func:`entries`)."""

    pairs: list[tuple[Node, Node]] = field(default_factory=list)


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def kind_of(node: Node) -> str:
    """Describe a node's type for messages ("a mapping", "a list", "a string", ...)."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert isinstance(node, Scalar)
    if not node.plain:
        return "a string"
    value = _core_scalar(node.text)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    return "a string"


def read_file(path: Path) -> Node:
    """Read and parse a YAML file; raise :class:`InvalidInput` with a located problem."""
    return parse_bytes(read_raw(path), str(path))


def read_raw(path: Path) -> bytes:
    """Read a YAML file's bytes (at most the size limit); raise :class:`InvalidInput`."""
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput([Problem(name, 1, None, "the file does not exist.")]) from None
    except IsADirectoryError:
        raise InvalidInput([Problem(name, 1, None, "this is a directory, not a file.")]) from None
    except OSError as e:
        raise InvalidInput([Problem(name, 1, None,
                                    f"cannot read the file: {e.strerror}.")]) from None
    if len(raw) > MAX_FILE_BYTES:
        size = path.stat().st_size if path.is_file() else len(raw)
        raise InvalidInput([Problem(
            name, 1, None,
            f"the file is {size / 1048576:.1f} MiB, more than the {MAX_FILE_BYTES // 1048576} MiB"
            " a schedule file may have; put large audiences in CSV files.",
        )])
    return raw


def parse_bytes(raw: bytes, name: str) -> Node:
    """Decode UTF-8 and parse; see :func:`parse_text`."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        col = len(raw[line_start:e.start].decode("utf-8", "replace")) + 1
        byte = raw[e.start]
        raise InvalidInput([Problem(
            name, line, col,
            f"invalid UTF-8 (byte 0x{byte:02x}); the file must be UTF-8 text.",
        )]) from None
    return parse_text(text, name)


def parse_text(text: str, name: str) -> Node:
    """Parse one YAML document into located nodes, refusing hostile input."""
    bad = _FORBIDDEN.search(text)
    if bad:
        line, col = _position(text, bad.start())
        char = bad.group()
        what = "a NUL byte" if char == "\0" else f"the control character U+{ord(char):04X}"
        raise InvalidInput([Problem(
            name, line, col, f"{what} is not allowed in a YAML file (is this a binary file?).",
        )])
    try:
        root = _Composer(name).compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "unreadable YAML").rstrip(".")
        context = f" ({e.context})" if e.context and e.problem else ""
        message = f"YAML syntax error: {problem}{context}."
        marks = {m.line for m in (e.problem_mark, e.context_mark) if m is not None}
        message += next(filter(None, (_cron_hint(text, n + 1) for n in sorted(marks))), "")
        if mark is None:
            raise InvalidInput([Problem(name, 1, None, message)]) from None
        raise InvalidInput([Problem(name, mark.line + 1, mark.column + 1, message)]) from None
    except yaml.YAMLError as e:  # reader errors carry no mark
        raise InvalidInput([Problem(name, 1, None, f"YAML error: {e}.")]) from None
    if root is None:
        raise InvalidInput([Problem(name, 1, None, "the file is empty.")])
    return root


# A `cron:` key whose value is not quoted, in a block or a flow mapping (`{cron: ...}`).
_CRON_BLOCK = re.compile(r"\s*(?:-\s+)?cron\s*:[ \t]+(?P<value>[^\s'\"].*)")
_CRON_FLOW = re.compile(r"[{,]\s*cron\s*:[ \t]+(?P<value>[^\s'\"][^,}]*)")


def _cron_hint(text: str, line: int) -> str:
    """Return a sentence to add to a YAML error on ``line`` of an unquoted cron expression."""
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    block = _CRON_BLOCK.match(source)
    found = block or _CRON_FLOW.search(source)
    if found is None:
        return ""
    value = found["value"].split(" #")[0].rstrip()
    # `*` starts an alias and `@` is reserved: a cron expression must be a quoted string.
    if not (value[0] in "*@" or " " in value or "*" in value):
        return ""
    # In a block mapping the whole rest of the line is the value; in a flow one, perhaps not.
    example = value if block else "*/5 * * * *"
    return f' Put cron expressions in quotes: cron: "{example}".'


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


class _HostileInput(Exception):
    def __init__(self, line: int, col: int, message: str) -> None:
        self.line, self.col, self.message = line, col, message


class _Composer:
    """Builds nodes from parser events without recursion, so depth costs no stack."""

    def __init__(self, name: str) -> None:
        self.name = name

    def compose(self, text: str) -> Node | None:
        try:
            return self._compose(text)
        except _HostileInput as e:  # `cron: *5 ...` reads as an alias: say to quote it
            raise InvalidInput([Problem(self.name, e.line, e.col,
                                        e.message + _cron_hint(text, e.line))]) from None

    def _compose(self, text: str) -> Node | None:
        loader = _Parser(text)
        try:
            return self._walk(_events(loader))
        finally:
            loader.dispose()

    def _walk(self, events: Iterator[Any]) -> Node | None:
        # The hot loop of reading a file: one pass over parser events, the most common
        # kinds tested first, children collected into the list of the open container.
        anchors: dict[str, Node] = {}
        open_anchors: set[str] = set()
        top: list[Node] = []
        children = top
        weight = 0  # nodes so far in the open container, counting alias expansions
        stack: list[tuple[Node, list[Node], str | None, int]] = []
        documents = 0
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
        ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
        for ev in events:
            kind = type(ev)
            mark = ev.start_mark
            if kind is scalar_event:
                tag = ev.tag
                node: Node = Scalar(mark.line + 1, mark.column + 1, 1, ev.value,
                                    ev.style or None, None if tag in (None, "!") else tag,
                                    ev.end_mark.line + 1)
                if ev.anchor:
                    anchors[ev.anchor] = node
                children.append(node)
                weight += 1
            elif kind in starts:
                if len(stack) >= MAX_DEPTH:
                    raise _HostileInput(mark.line + 1, mark.column + 1, "the data is nested"
                                        f" more than {MAX_DEPTH} levels deep.")
                container: Node = (SequenceNode(mark.line + 1, mark.column + 1)
                                   if kind is yaml.SequenceStartEvent
                                   else MappingNode(mark.line + 1, mark.column + 1))
                if ev.anchor:
                    anchors[ev.anchor] = container
                    open_anchors.add(ev.anchor)
                stack.append((container, children, ev.anchor, weight))
                children, weight = [], 0
            elif kind in ends:
                container, parent, anchor, parent_weight = stack.pop()
                container.weight = 1 + weight
                if container.weight > MAX_WEIGHT:
                    raise _HostileInput(container.line, container.col,
                                        "aliases expand this to more than"
                                        f" {MAX_WEIGHT:,} values (a YAML alias bomb?).")
                if isinstance(container, SequenceNode):
                    container.items = children
                else:
                    assert isinstance(container, MappingNode)
                    container.pairs = list(zip(children[0::2], children[1::2], strict=True))
                if anchor:
                    open_anchors.discard(anchor)
                children, weight = parent, parent_weight + container.weight
                children.append(container)
            elif kind is alias_event:
                line, col = mark.line + 1, mark.column + 1
                if ev.anchor in open_anchors:
                    raise _HostileInput(line, col, f"the alias *{ev.anchor} refers to a value"
                                        " that contains it (a recursive alias).")
                target = anchors.get(ev.anchor)
                if target is None:
                    raise _HostileInput(line, col, f"the alias *{ev.anchor} has no anchor"
                                        f" &{ev.anchor} before it.")
                children.append(target)
                weight += target.weight
                if weight > MAX_WEIGHT:
                    raise _HostileInput(line, col, "aliases expand this to more than"
                                        f" {MAX_WEIGHT:,} values (a YAML alias bomb?).")
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _HostileInput(mark.line + 1, mark.column + 1, "the file holds more"
                                        " than one YAML document; put everything in one.")
        return top[0] if top else None


def _events(loader: Any) -> Iterator[Any]:
    get, check = loader.get_event, loader.check_event
    while check():
        yield get()


def entries(node: MappingNode) -> Iterator[tuple[Scalar, Node]]:
    """Yield a mapping's key/value pairs with ``<<`` merges applied (explicit keys win).

    Non-scalar keys and duplicate keys are reported through :class:`InvalidInput` by the
    caller's reader; this helper only expands merges, in file order.
    """
    explicit = {k.text for k, _ in node.pairs if isinstance(k, Scalar) and not _is_merge(k)}
    seen: set[str] = set()
    for key, value in node.pairs:
        if isinstance(key, Scalar) and _is_merge(key):
            sources = value.items if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    for k, v in entries(source):
                        if k.text not in explicit and k.text not in seen:
                            seen.add(k.text)
                            yield k, v
            continue
        if isinstance(key, Scalar):
            yield key, value


def _is_merge(key: Scalar) -> bool:
    return key.plain and key.text == "<<"


# --- free-form data: YAML 1.2 core schema -> JSON values -------------------------------------

_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z")
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


def _core_scalar(text: str) -> Any:
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _SPECIAL_FLOAT.match(text):
        return math.nan
    return text


class DataError(Exception):
    """A value in free-form data that JSON cannot carry; located at ``node``."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def to_json(node: Node) -> Any:
    """Convert a node to JSON-compatible values, iteratively; raise :class:`DataError`.

    The weight limit applied while composing bounds the work here even with aliases.
    """
    result: list[Any] = []
    # Work items: (node, setter). The setter places the converted value in its parent.
    work: list[tuple[Node, Any]] = [(node, result.append)]
    while work:
        current, put = work.pop()
        if isinstance(current, Scalar):
            put(_scalar_json(current))
        elif isinstance(current, SequenceNode):
            items: list[Any] = [None] * len(current.items)
            put(items)
            for i, item in enumerate(current.items):
                work.append((item, _setter(items, i)))
        else:
            assert isinstance(current, MappingNode)
            obj: dict[str, Any] = {}
            put(obj)
            seen: dict[str, Scalar] = {}
            for key, value in entries(current):
                if key.text in seen:
                    raise DataError(key, f"the key {key.text!r} appears twice (first on line"
                                    f" {seen[key.text].line}).")
                seen[key.text] = key
                obj[key.text] = None
                work.append((value, _setter(obj, key.text)))
            for key_node, _ in current.pairs:
                if not isinstance(key_node, Scalar):
                    raise DataError(key_node, "keys must be strings, not "
                                    f"{kind_of(key_node)[2:]}s.")
    return result[0]


def _setter(container: Any, index: Any) -> Any:
    def put(value: Any) -> None:
        container[index] = value
    return put


def _scalar_json(node: Scalar) -> Any:
    if node.tag is not None:
        if node.tag in ("tag:yaml.org,2002:str", "!!str"):
            return node.text
        raise DataError(node, f"the tag {node.tag} is not supported; quote the value instead.")
    if not node.plain:
        return node.text
    value = _core_scalar(node.text)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise DataError(node, f"{node.text} is not a number JSON can carry; quote it.")
    return value
