"""The YAML reader: locations, typing of free-form data, and hostile input."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from eventcron.config.yamlsource import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    DataError,
    MappingNode,
    Scalar,
    SequenceNode,
    entries,
    parse_bytes,
    parse_text,
    read_file,
    to_json,
)
from eventcron.problems import InvalidInput


def problem(text: str | bytes) -> str:
    raw = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(InvalidInput) as info:
        parse_bytes(raw, "f.yaml")
    assert len(info.value.problems) == 1
    return str(info.value.problems[0])


def test_nodes_remember_line_and_column() -> None:
    root = parse_text("a: 1\nb:\n  - x\n  - 'y'\n", "f.yaml")
    assert isinstance(root, MappingNode)
    (ka, va), (_, vb) = root.pairs
    assert (ka.line, ka.col, va.line, va.col) == (1, 1, 1, 4)
    assert isinstance(vb, SequenceNode)
    x, y = vb.items
    assert isinstance(x, Scalar) and isinstance(y, Scalar)
    assert (x.line, x.col, x.text, x.plain) == (3, 5, "x", True)
    assert (y.line, y.col, y.text, y.plain, y.text_col()) == (4, 5, "y", False, 6)


@pytest.mark.parametrize(("source", "expected"), [
    ("v: 1", 1), ("v: -7", -7), ("v: 0x1f", 31), ("v: 0o17", 15), ("v: 1.5", 1.5),
    ("v: 1e3", 1000.0), ("v: true", True), ("v: False", False), ("v: ~", None), ("v:", None),
    ("v: null", None),
    # YAML 1.2 core schema: these stay strings, unlike YAML 1.1's yes/no/on/off
    ("v: yes", "yes"), ("v: no", "no"), ("v: on", "on"), ("v: 2026-12-01", "2026-12-01"),
    ("v: '1'", "1"), ('v: "true"', "true"), ("v: !!str 12", "12"),
    ("v: |\n  two\n  lines\n", "two\nlines\n"),
    ("v: [1, a, {b: c}]", [1, "a", {"b": "c"}]),
])
def test_data_follows_the_yaml_1_2_core_schema(source: str, expected: Any) -> None:
    root = parse_text(source, "f.yaml")
    assert to_json(root) == {"v": expected}


@pytest.mark.parametrize(("source", "message"), [
    ("v: .nan", "not a number JSON can carry"),
    ("v: -.inf", "not a number JSON can carry"),
    ("v: !!python/object:os.system x", "tag"),
    ("v: 1\nv: 2", "appears twice"),
    ("? [a]\n: 1", "keys must be strings"),
])
def test_data_that_json_cannot_carry_is_refused(source: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        to_json(parse_text(source, "f.yaml"))
    assert message in info.value.message


def test_merge_keys_are_expanded_and_explicit_keys_win() -> None:
    root = parse_text("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert isinstance(root, MappingNode)
    m = root.pairs[1][1]
    assert isinstance(m, MappingNode)
    assert {k.text: to_json(v) for k, v in entries(m)} == {"x": 1, "y": 3}


@pytest.mark.parametrize(("source", "expected"), [
    ("a: [1, 2\n", "f.yaml:2:1: YAML syntax error"),
    ("a: b: c\n", "f.yaml:1:5: YAML syntax error: mapping values are not allowed"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1: the file holds more than one YAML document"),
    ("a: *nothing\n", "f.yaml:1:4: the alias *nothing has no anchor"),
    ("a: &x [1, *x]\n", "f.yaml:1:11: the alias *x refers to a value that contains it"),
    ("", "f.yaml:1: the file is empty."),
    ("# only a comment\n", "f.yaml:1: the file is empty."),
])
def test_syntax_errors_are_located(source: str, expected: str) -> None:
    assert problem(source).startswith(expected)


def test_nul_bytes_are_located() -> None:
    assert problem(b"version: 1\nid: a\x00b\n") == (
        "f.yaml:2:6: a NUL byte is not allowed in a YAML file (is this a binary file?).")


def test_control_characters_are_refused() -> None:
    assert problem("a: b\x07\n").startswith("f.yaml:1:5: the control character U+0007")


def test_invalid_utf8_is_located_by_line_and_column() -> None:
    assert problem(b"a: 1\nb: caf\xe9\n") == (
        "f.yaml:2:7: invalid UTF-8 (byte 0xe9); the file must be UTF-8 text.")


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert to_json(parse_bytes(b"\xef\xbb\xbfa: 1\n", "f.yaml")) == {"a": 1}


@pytest.mark.timeout(10)
def test_billion_laughs_is_refused_quickly_and_in_little_memory() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    tracemalloc.start()
    try:
        message = problem("\n".join(lines) + "\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "a YAML alias bomb?" in message
    assert peak < 20 * 1024 * 1024


@pytest.mark.timeout(10)
@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_data_nested_thousands_deep_is_refused(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    depth = 5000
    message = problem("v: " + opening * depth + "1" + closing * depth + "\n")
    assert ("nested more than" in message) or ("maximum nesting depth" in message)


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1
    root = parse_text("v: " + "[" * depth + "1" + "]" * depth + "\n", "f.yaml")
    value: Any = to_json(root)["v"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == [1]


@pytest.mark.timeout(10)
def test_binary_junk_is_refused() -> None:
    junk = random.Random(7).randbytes(3_000_000)
    assert "invalid UTF-8" in problem(junk) or "not allowed in a YAML file" in problem(junk)


@pytest.mark.timeout(10)
def test_text_junk_is_a_syntax_error() -> None:
    rng = random.Random(3)
    junk = "".join(rng.choice("{}[]:,-&*!|>'\"%@` \n\tabc") for _ in range(1_000_000))
    assert "YAML" in problem(junk)


@pytest.mark.timeout(10)
def test_oversized_files_are_refused_before_reading_them_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MiB of NULs without writing them
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as info:
            read_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "the file is 50.0 MiB, more than the 4 MiB" in str(info.value)
    assert peak < MAX_FILE_BYTES + 4 * 1024 * 1024


def test_missing_file_and_directory_are_sentences(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        read_file(tmp_path / "nope.yaml")
    assert str(info.value).endswith("nope.yaml:1: the file does not exist.")
    with pytest.raises(InvalidInput) as info:
        read_file(tmp_path)
    assert "this is a directory, not a file." in str(info.value)
