"""The opt-out list (``suppress.file``): users who are never sent anything.

A CSV file whose header names an ``app_user_id`` column; other columns are ignored (even
bytes that are not UTF-8 there), so an export of a preference centre can be used as it is.
Ids are checked as audience ids are (:func:`~eventcron.config.audience.check_id`) and bad
rows reported as ``file:line: message``; a user listed twice is fine. The ids are held in
memory (100,000 of them take about 10 MB): every fire and every attempt asks about a user.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eventcron.config import schema
from eventcron.config.audience import (
    ID_COLUMN,
    MAX_CSV_PROBLEMS,
    RowError,
    RowReader,
    check_id,
    file_stamp,
    read_error,
)
from eventcron.config.fields import FieldReader
from eventcron.config.model import Suppression
from eventcron.config.yamlsource import Node
from eventcron.problems import Problems, did_you_mean

_UNDECODED: Final = re.compile("[\udc80-\udcff]")  # bytes surrogateescape kept as they were


@dataclass(slots=True)
class OptOuts:
    """What reading an opt-out file found: the users, and the problems of its rows."""

    users: frozenset[str] = frozenset()
    stamp: tuple[int, int, int] | None = None  # the file as it was before it was read
    problems: Problems = field(default_factory=lambda: Problems(MAX_CSV_PROBLEMS))


def read_optouts(path: Path) -> OptOuts:
    """Read an opt-out CSV in one streaming pass; header and row problems are collected.

    Raises OSError when the file cannot be opened or read at all (FileNotFoundError when
    it does not exist).
    """
    # The stamp is taken first: a change made while the file is read then shows as a new
    # stamp to the watcher, which reloads it again.
    found = OptOuts(stamp=file_stamp(path))
    name = str(path)
    users: set[str] = set()
    with _open(path) as f:
        rows = RowReader(f)
        try:
            header = [c.strip() for c in next(rows)]
        except StopIteration:
            found.problems.add(name, 1, None, "the file is empty; it needs a header row naming"
                               f" the {ID_COLUMN} column.")
            return found
        except csv.Error as e:
            found.problems.add(name, 1, None, f"cannot read the header: {read_error(e)}.")
            return found
        if ID_COLUMN not in header:
            found.problems.add(name, 1, None, _no_id_column(header))
            return found
        at = header.index(ID_COLUMN)
        width = len(header)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except RowError as e:
                found.problems.add(name, e.line, None, e.message)
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != width:
                # A stray comma shifts the columns: the id read could be another user's.
                found.problems.add(name, rows.line, None, f"the row has {len(row)}"
                                   f" fields but the header has {width}.")
                continue
            problem = _undecoded(row[at]) or check_id(row[at], ID_COLUMN)
            if problem:
                found.problems.add(name, rows.line, None, problem)
                continue
            users.add(row[at])
    found.users = frozenset(users)
    return found


def _open(path: Path) -> io.TextIOWrapper:
    # As the audience reader opens a CSV (utf-8-sig drops a BOM; newline="" for quoted line
    # breaks), but bytes that are not UTF-8 are kept, so only the id column is held to it.
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _undecoded(value: str) -> str | None:
    bad = None if value.isascii() else _UNDECODED.search(value)
    if bad is None:
        return None
    return f"{ID_COLUMN} is not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x})."


def _no_id_column(header: list[str]) -> str:
    undecoded = next((problem for c in header if (problem := _undecoded(c))), None)
    if undecoded:  # a UTF-16 export (Excel's "Unicode text") most likely
        byte = undecoded.rsplit("(", 1)[1]
        return f"cannot read the header: invalid UTF-8 ({byte} Save the file as CSV UTF-8."
    close = next((c for c in header if did_you_mean(c, [ID_COLUMN])), None)
    hint = (f" (is {close!r} meant to be {ID_COLUMN!r}?)" if close
            else ". The first row must name the columns")
    return (f"the header has no {ID_COLUMN!r} column; it has"
            f" {', '.join(map(repr, header)) or 'nothing'}{hint}.")


def suppression(r: FieldReader, node: Node) -> Suppression | None:
    """Read the ``suppress`` section and the opt-out file it names; None after a problem."""
    f = r.mapping(node, schema.SUPPRESS, "suppress")
    if f is None:
        return None
    if "file" not in f:
        r.error(node, "suppress needs 'file': the CSV file of users who opted out.")
        return None
    value = f["file"][1]
    text = r.string(value, "suppress.file")
    if text is None:
        return None
    # Absolute, but symlinks as written: a list swapped by relinking (a Kubernetes
    # ConfigMap) must be watched where the file names it, not where it pointed once.
    path = (r.base / text).absolute()
    found = r.csv_file(value, "suppress.file", text, path, read_optouts, kind="opt-out file",
                       missing="")
    if found is None:
        return None
    return Suppression(path, found.users, found.stamp)

