"""Typed reading of single YAML values, collecting located problems instead of raising.

:class:`FieldReader` turns one node into a string, a whole number, a boolean, a duration, a
date-time or a time zone, or records ``path:line:col: message`` and returns None, so a
section can go on and report every problem of a file at once. The sections of the file are
read in :mod:`eventcron.config.settings`, :mod:`~eventcron.config.users` and
:mod:`~eventcron.config.schedules` from these pieces. Opens no file itself: a CSV file the
schedule file names is read by the function handed to :meth:`FieldReader.csv_file`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from eventcron.config import schema
from eventcron.config.audience import check_id, check_zone, missing_hint, read_error
from eventcron.config.model import USER_ZONE
from eventcron.config.units import format_duration, parse_duration
from eventcron.config.yamlsource import MappingNode, Node, Scalar, entries, kind_of
from eventcron.problems import Problems, did_you_mean

Keyed = dict[str, tuple[Scalar, Node]]  # a section's keys: name -> (key node, value node)
T = TypeVar("T")


class Scanned(Protocol):
    """What reading a CSV file gives: at least the problems found in it."""

    problems: Problems


S = TypeVar("S", bound=Scanned)


class FieldReader:
    """Reads values of one schedule file, collecting every problem before giving up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.base = path.parent  # relative paths in the file are relative to its folder
        self.problems = Problems()

    def error(self, node: Node, message: str, *, offset: int = 0) -> None:
        """Record a problem at ``node``, or ``offset`` characters into a scalar's text."""
        col = node.text_col() + offset if isinstance(node, Scalar) and offset else node.col
        self.problems.add(self.name, node.line, col, message)

    def parsed(self, node: Node, what: str, parse: Callable[[str], T]) -> T | None:
        """Read a string and ``parse`` it; its ValueError, a sentence, is the problem."""
        text = self.string(node, what)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as e:
            message = str(e)
            self.error(node, f"{what}: {message}{'' if message.endswith('.') else '.'}")
            return None

    def csv_file(self, node: Node, where: str, text: str, path: Path,
                 read: Callable[[Path], S], *, kind: str, missing: str = "the file ") -> S | None:
        """Read the CSV file ``text`` (at ``path``) that ``where`` names at ``node``, with ``read``.

        A missing or unreadable file is one problem at ``node``. The problems in the file are
        listed with their own file and line, after one at ``node`` marked as referring to the
        ``kind`` of file (so that a reload names the CSV file as the one at fault). ``missing``
        comes before the path in "… does not exist". Returns None after any problem.
        """
        try:
            found = read(path)
        except FileNotFoundError:
            self.error(node, f"{where}: {missing}{path} does not exist{missing_hint(path)}.")
            return None
        except OSError as e:
            self.error(node, f"{where}: cannot read {path}: {read_error(e)}.")
            return None
        if found.problems:
            self.problems.add(self.name, node.line, node.col, f"{where}: the CSV file {text!r}"
                              " has problems (listed with their own file and line).",
                              refers=(kind, str(path)))
            self.problems.extend(found.problems.items)
            if found.problems.dropped:
                self.problems.add(str(path), 1, None, f"... and {found.problems.dropped} more"
                                  " problems in this file.")
            return None
        return found

    def mapping(self, node: Node, section: dict[str, Any], where: str) -> Keyed | None:
        """Check a mapping against a schema section: type, unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            if isinstance(node, Scalar) and node.is_null:
                return {}
            self.error(node, f"{where} must be a mapping, not {kind_of(node)}.")
            return None
        allowed = schema.keys(section)
        out: Keyed = {}
        for key_node, _ in node.pairs:
            if not isinstance(key_node, Scalar):
                self.error(key_node, f"keys in {where} must be plain names, not"
                           f" {kind_of(key_node)}.")
        for key, value in entries(node):
            name = key.text
            if name in out:
                self.error(key, f"{name!r} appears twice in {where} (first on line"
                           f" {out[name][0].line}).")
                continue
            if name not in allowed:
                self.error(key, f"unknown key {name!r} in {where}{did_you_mean(name, allowed)}.")
                continue
            out[name] = (key, value)
        return out

    def string(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        """Read a string; plain scalars count as strings exactly as written (``007`` stays)."""
        if not isinstance(node, Scalar):
            self.error(node, f"{what} must be a string, not {kind_of(node)}.")
            return None
        if node.tag is not None and node.tag != "tag:yaml.org,2002:str":
            self.error(node, f"{what}: YAML tags such as {node.tag} are not supported.")
            return None
        if node.is_null:
            if allow_empty:
                return ""
            self.error(node, f"{what} has no value.")
            return None
        return node.text

    def name_value(self, node: Node, what: str) -> str | None:
        """Read an id or event type: a string without control characters, of sane length."""
        value = self.string(node, what)
        if value is None:
            return None
        problem = check_id(value, what)
        if problem:
            self.error(node, problem)
            return None
        return value

    def integer(self, node: Node, what: str, low: int, high: int) -> int | None:
        """Read a whole number in ``[low, high]``."""
        if isinstance(node, Scalar) and node.plain and re.fullmatch(r"[-+]?\d+", node.text):
            value = int(node.text)
            if low <= value <= high:
                return value
        self.error(node, f"{what} must be a whole number from {low:,} to {high:,}, not"
                   f" {shown(node)}.")
        return None

    def boolean(self, node: Node, what: str) -> bool | None:
        """Read true or false (YAML 1.1 spellings such as ``yes`` get a hint, not a guess)."""
        if isinstance(node, Scalar) and node.plain:
            low = node.text.lower()
            if low == "true":
                return True
            if low == "false":
                return False
            if low in ("yes", "on", "y"):
                self.error(node, f"{what} must be true or false; write true instead of"
                           f" {node.text!r}.")
                return None
            if low in ("no", "off", "n"):
                self.error(node, f"{what} must be true or false; write false instead of"
                           f" {node.text!r}.")
                return None
        self.error(node, f"{what} must be true or false, not {shown(node)}.")
        return None

    def duration(self, node: Node, what: str, *, minimum: float = 0.0) -> float | None:
        """Read a duration into seconds."""
        if not isinstance(node, Scalar):
            self.error(node, f"{what} must be a duration such as 30s or 5m, not {kind_of(node)}.")
            return None
        try:
            seconds = parse_duration(node.text)
        except ValueError as e:
            self.error(node, f"{what}: {e}")
            return None
        if seconds < minimum:
            self.error(node, f"{what} must be at least {format_duration(minimum)}, not"
                       f" {node.text!r}.")
            return None
        return seconds

    def timestamp(self, node: Node, what: str) -> datetime | None:
        """Read an ISO 8601 date or date-time; naive means wall time in the schedule's zone."""
        text = self.string(node, what)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            self.error(node, f"{what} must be a date-time such as 2026-12-01T09:00:00, not"
                       f" {text!r}.")
            return None
        return value

    def zone(self, node: Node, what: str, *, allow_user: bool = False) -> str | None:
        """Read an IANA time zone name (or ``user`` where allowed)."""
        text = self.string(node, what)
        if text is None:
            return None
        if allow_user and text == USER_ZONE:
            return text
        problem = check_zone(text)
        if problem:
            self.error(node, f"{what}: {problem}")
            return None
        return text


def shown(node: Node) -> str:
    """Show a value in a message: its text, cut at 40 characters, or its kind."""
    if isinstance(node, Scalar):
        return repr(node.text) if len(node.text) <= 40 else repr(node.text[:37] + "...")
    return kind_of(node)
