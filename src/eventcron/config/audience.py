"""Audiences: who receives a schedule's events, inline in the file or streamed from CSV.

A CSV audience is never held in memory: validation scans it once (counting rows, collecting
time zones, reporting bad lines as ``file:line: message``) and each fire streams it again in
batches. Members travel as plain tuples because a fire may cover a million of them.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import itertools
import logging
import re
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

from eventcron.problems import Problems, did_you_mean

log = logging.getLogger("eventcron.audience")

ID_COLUMN: Final = "app_user_id"
TZ_COLUMN: Final = "timezone"
MAX_ID_LENGTH: Final = 1024  # characters: ids and event types longer than this are mistakes
MAX_CSV_PROBLEMS: Final = 20  # per file: after this many, the rest is counted, not listed
MAX_LISTED: Final = 10_000  # directory entries looked at for a did-you-mean
CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


class AudienceError(Exception):
    """An audience file cannot be streamed at fire time; the message says why."""


class Member(NamedTuple):
    """One recipient: id, own time zone (or None) and extra fields in audience column order."""

    id: str
    timezone: str | None
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Audience:
    """Users of a schedule: inline ``members`` or a CSV ``file``, already validated."""

    name: str | None  # None for a schedule's own inline users
    columns: tuple[str, ...]  # extra field names, in the order of Member.fields
    timezones: frozenset[str | None]  # distinct user zones; None when some users have none
    size: int
    members: tuple[Member, ...] | None = None
    file: Path | None = None
    gaps: dict[str, str] = field(default_factory=dict)  # inline: column -> a user without it
    stamp: tuple[int, int, int] | None = None  # CSV: (mtime_ns, size, inode) when checked

    def iter_members(self, zone: str | None = None, *, any_zone: bool = True) -> Iterator[Member]:
        """Yield members, all of them or (``any_zone=False``) those whose zone is ``zone``."""
        source = iter(self.members) if self.members is not None else self._stream()
        if any_zone:
            yield from source
        else:
            for m in source:
                if m.timezone == zone:
                    yield m

    def find(self, app_user_id: str) -> Member | None:
        """Return the member with this id, or None."""
        for m in self.iter_members():
            if m.id == app_user_id:
                return m
        return None

    def _stream(self) -> Iterator[Member]:
        assert self.file is not None
        problems = Problems(MAX_CSV_PROBLEMS)
        try:
            with _open(self.file) as f:
                header = _read_header(f, str(self.file), problems)
        except FileNotFoundError:
            raise AudienceError(f"cannot stream the audience {self.file}: the file does not"
                                " exist") from None
        except OSError as e:
            raise AudienceError(f"cannot stream the audience {self.file}:"
                                f" {read_error(e)}") from None
        if header is None:
            raise AudienceError(f"cannot stream the audience {self.file}: "
                                f"{problems.items[0].message if problems else 'unreadable'}")
        columns = tuple(c for c in header if c not in (ID_COLUMN, TZ_COLUMN))
        if columns != self.columns:
            # Placeholders were checked against the old columns; wait for the reload that
            # the change triggers rather than render with the wrong ones.
            raise AudienceError(f"the columns of {self.file} changed since it was checked"
                                f" ({', '.join(columns)} instead of {', '.join(self.columns)})")
        # Rows that fail validation now (the file changed since it was checked) are skipped;
        # the reload that follows the change reports them. A changed file may also repeat an
        # id (the reload refuses it): only its first row counts, as in every job's stream.
        # The ids themselves, not hashes: two ids with one hash must not drop a user.
        seen: set[str] | None = set() if file_stamp(self.file) != self.stamp else None
        repeats = 0
        for _line, member in _read_rows(self.file, problems=problems):
            if seen is not None:
                if member.id in seen:
                    repeats += 1
                    continue
                seen.add(member.id)
            yield member
        if problems:
            log.warning("skipped %d bad rows of %s while firing (first: %s)", len(problems),
                        self.file, problems.items[0])
        if repeats:
            log.warning("skipped %d rows of %s that repeat an earlier user while firing",
                        repeats, self.file)


def check_id(value: str, what: str) -> str | None:
    """Return a problem sentence for a bad id or event type, or None when it is fine."""
    if not value.strip():
        return f"{what} is empty."
    if value != value.strip():
        # Ids are compared exactly; " u_2" and "u_2" would be two users to the ledger.
        return (f"{what} {value!r} has leading or trailing whitespace; ids are taken exactly"
                " as written.")
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is {len(value):,} characters long; the limit is {MAX_ID_LENGTH:,}."
    bad = CONTROL.search(value)
    if bad:
        return f"{what} contains the control character U+{ord(bad.group()):04X}."
    return None


@functools.cache
def zone_names() -> frozenset[str]:
    """Return every IANA zone name this machine knows."""
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=4096)
def check_zone(name: str) -> str | None:
    """Return a problem sentence for an unknown time zone name, or None."""
    # Loading the zone first: listing every zone (for the suggestion) walks the whole tz
    # database, about 20 ms, which a valid file never needs.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    else:
        return None
    hint = did_you_mean(name, zone_names())
    if not hint:
        by_city = {z.rsplit("/", 1)[-1].lower(): z for z in zone_names()}
        match = by_city.get(name.replace(" ", "_").lower())
        hint = f" (did you mean {match!r}?)" if match else ""
    return f"unknown time zone {name!r}{hint}; use an IANA name such as 'Europe/Berlin'."


@dataclass(slots=True)
class CsvScan:
    """What validating a CSV audience found."""

    columns: tuple[str, ...] = ()
    timezones: set[str | None] = field(default_factory=set)
    size: int = 0
    problems: Problems = field(default_factory=lambda: Problems(MAX_CSV_PROBLEMS))
    stamp: tuple[int, int, int] | None = None  # the file as it was when scanned


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Return what tells a file's versions apart: (mtime_ns, size, inode), or None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def scan_csv(path: Path) -> CsvScan:
    """Validate a CSV audience in one streaming pass (csv's 128 KiB field limit bounds memory).

    Duplicate ids are found by their hashes (a set of ints, not of the ids); only when one
    repeats is the file read a second time, to name the first line of each repeated id.
    Raises OSError when the file cannot be opened (FileNotFoundError when it does not exist).
    """
    scan = CsvScan(stamp=file_stamp(path))
    with _open(path) as f:
        header = _read_header(f, str(path), scan.problems)
    if header is not None:
        scan.columns = tuple(c for c in header if c not in (ID_COLUMN, TZ_COLUMN))
        seen: set[int] = set()
        repeated: set[int] = set()
        for _line, member in _read_rows(path, problems=scan.problems):
            scan.size += 1
            scan.timezones.add(member.timezone)
            h = hash(member.id)
            if h in seen:
                repeated.add(h)
            else:
                seen.add(h)
        del seen
        if repeated:
            _report_duplicates(path, repeated, scan.problems)
    return scan


def _report_duplicates(path: Path, hashes: set[int], problems: Problems) -> None:
    # Second pass over the ids whose hash repeated: equal hashes of different ids are
    # told apart here, and each repeat names where the id was first listed.
    first: dict[str, int] = {}
    for line, member in _read_rows(path, problems=None):
        if hash(member.id) not in hashes:
            continue
        if member.id in first:
            problems.add(str(path), line, None, duplicate_message(
                member.id, f"{path}:{first[member.id]}"))
        else:
            first[member.id] = line


def duplicate_message(app_user_id: str, first: str) -> str:
    """Return the sentence for an id listed twice in one audience; ``first`` is its place."""
    return f"the user {app_user_id!r} is listed twice (first at {first})."


def _open(path: Path) -> io.TextIOWrapper:
    # newline="" lets the csv module see quoted line breaks; utf-8-sig drops a BOM.
    return open(path, encoding="utf-8-sig", newline="")


def _read_header(f: Iterable[str], name: str, problems: Problems) -> list[str] | None:
    def report(message: str) -> None:
        problems.add(name, 1, None, message)

    try:
        row = next(RowReader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        report(f"cannot read the header: {read_error(e)}.")
        return None
    if row is None:
        report("the file is empty; it needs a header row starting with app_user_id.")
        return None
    header = [c.strip() for c in row]
    if ID_COLUMN not in header:
        hint = did_you_mean(header[0], [ID_COLUMN]) if header else ""
        report(f"the header has no {ID_COLUMN!r} column{hint};"
               f" it has {', '.join(map(repr, header)) or 'nothing'}.")
        return None
    seen: set[str] = set()
    for i, col in enumerate(header, 1):
        if not col:
            report(f"column {i} of the header has no name.")
            return None
        if col in seen:
            report(f"the header names {col!r} twice.")
            return None
        seen.add(col)
    return header


def read_error(e: BaseException) -> str:
    """Say why a file could not be read, in a few words (no trailing period)."""
    if isinstance(e, UnicodeDecodeError):
        return f"invalid UTF-8 (byte 0x{e.object[e.start]:02x})"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e).rstrip(".")


def _read_rows(path: Path, problems: Problems | None) -> Iterator[tuple[int, Member]]:
    """Yield ``(line, member)`` for good rows; report bad ones to ``problems`` if given."""
    name = str(path)

    def report(line: int, message: str) -> None:
        if problems is not None:
            problems.add(name, line, None, message)

    try:
        f = _open(path)
    except OSError as e:
        report(1, f"cannot open the file: {read_error(e)}.")
        return
    with f:
        rows = RowReader(f)
        try:
            header = [c.strip() for c in next(rows)]
        except (StopIteration, UnicodeDecodeError, csv.Error):
            return  # reported by _read_header
        if ID_COLUMN not in header:
            return
        id_at = header.index(ID_COLUMN)
        tz_at = header.index(TZ_COLUMN) if TZ_COLUMN in header else -1
        extra = [i for i, c in enumerate(header) if c not in (ID_COLUMN, TZ_COLUMN)]
        width = len(header)
        line = 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except UnicodeDecodeError as e:
                report(rows.lines_read + 1, f"invalid UTF-8 (byte 0x{e.object[e.start]:02x});"
                       " the rest of the file was not read.")
                return
            except RowError as e:
                report(e.line, e.message)
                continue
            line = rows.line
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != width:
                report(line, f"the row has {len(row)} fields but the header has {width}.")
                continue
            user = row[id_at]
            problem = check_id(user, ID_COLUMN)
            if problem:
                report(line, problem)
                continue
            tz: str | None = None
            if tz_at >= 0:
                tz = row[tz_at].strip() or None
                if tz is not None:
                    problem = check_zone(tz)
                    if problem:
                        report(line, problem)
                        continue
            yield line, Member(user, tz, tuple(row[i] for i in extra))


class RowError(csv.Error):
    """A row that cannot be read, at ``line``; reading goes on after it.

    ``str()`` is the reason alone (for "cannot read the header: ..."); ``message`` is the
    sentence to report for a row.
    """

    def __init__(self, line: int, reason: str, message: str) -> None:
        super().__init__(reason)
        self.line = line
        self.message = message


class RowReader:
    """Reads CSV rows from lines, numbering them, and stops an unclosed quote at its line.

    Iterating yields rows; :attr:`line` is then the last line of the row. A row that cannot
    be read raises :class:`RowError`, and the next row is read after it. An unclosed quote
    would make one field of the rest of the file (or of 128 KiB of it, where the csv module
    gives up): it is reported at the line of the quote, that line is skipped, and reading
    goes on at the next line, so the problems after it are found where they are.
    """

    def __init__(self, source: Iterable[str]) -> None:
        self._source = iter(source)
        self._kept: list[str] = []  # the lines of the row being read
        self._before = 0  # lines read before the kept ones
        self._again: list[str] = []  # lines to hand out again, the next one last
        self._ended = False  # the source ran out while the row was read
        self._reader = csv.reader(self._feed())
        self.line = 0

    def __iter__(self) -> RowReader:
        return self

    @property
    def lines_read(self) -> int:
        """How many lines were read so far (the number of the last one)."""
        return self._before + len(self._kept)

    def __next__(self) -> list[str]:
        kept = self._kept
        before = self._before = self._before + len(kept)
        kept.clear()
        self._ended = False
        try:
            row = next(self._reader)
        except csv.Error as e:
            reason = read_error(e)
            if "field limit" in reason:
                how = (f"it ran on to line {self.lines_read}, past the limit of"
                       f" {csv.field_size_limit():,} characters for a field")
            else:
                how = f"it ran on to line {self.lines_read}, where {reason}"
            self._unclosed(how)
            self.line = self.lines_read
            raise RowError(self.line, reason, f"unreadable row: {reason}.") from None
        self.line = before + len(kept)
        if self._ended:  # a row the end of the file cut short: a quote may be open
            self._unclosed("it ran on to the end of the file")
        return row

    def _feed(self) -> Iterator[str]:
        # A generator, not an iterator class: it is called for every line of a million.
        kept, again = self._kept, self._again
        while True:
            while again:
                text = again.pop()
                kept.append(text)
                yield text
            for text in self._source:
                kept.append(text)
                yield text
                if again:
                    break
            else:
                self._ended = True
                return

    def _unclosed(self, how: str) -> None:
        quote = _open_quote(self._kept, self._before + 1)
        if quote is None:
            return
        last = self.lines_read
        keep = quote - self._before  # the lines up to the quote's; the others are read again
        self._again.extend(reversed(self._kept[keep:]))
        del self._kept[keep:]
        if self._ended:  # the feed is over: a new one hands out the lines again
            self._reader = csv.reader(self._feed())
        self.line = quote
        reason = f"unclosed quote: a field opens with a quote on this line and never ends ({how})"
        after = (f"; this line was skipped and reading went on at line {quote + 1}"
                 if last > quote else "; this line was skipped")
        raise RowError(quote, reason, f"{reason}{after}.")


_START, _FIELD, _QUOTED, _QUOTE = range(4)  # where in a row _open_quote is


def _open_quote(lines: list[str], first: int) -> int | None:
    """Return the line of a quote still open after ``lines`` (line ``first`` onwards), or None.

    Follows the csv module's default dialect without strict checks: a quote opens a field
    only at its start; inside, two quotes are one and a single quote ends the quoting.
    """
    state, opened = _START, 0
    for number, text in enumerate(lines, first):
        at, end = 0, len(text)
        while at < end:
            if state == _QUOTED:  # skip to the next quote: fields may be 128 KiB long
                at = text.find('"', at)
                if at < 0:
                    break
                state = _QUOTE
            else:
                ch = text[at]
                if ch == '"' and state in (_START, _QUOTE):
                    if state == _START:
                        opened = number
                    state = _QUOTED
                elif ch in ",\r\n":
                    state = _START
                elif state != _FIELD:
                    state = _FIELD
            at += 1
    return opened if state == _QUOTED else None


def missing_hint(path: Path) -> str:
    """Return a did-you-mean for a file that does not exist, from the files beside it.

    Says so when the folder is missing too; the text goes before the sentence's full stop.
    """
    try:
        names = [p.name for p in itertools.islice(path.parent.iterdir(), MAX_LISTED)]
    except FileNotFoundError:
        return f" (nor does the folder {path.parent})"
    except OSError:
        return ""
    # The ending both names share is left out of the comparison: 'optouts.example.csv' is
    # not a misspelling of 'customers.example.csv', though most of their letters agree.
    best, score = "", 0.6
    for other in names:
        shared = _shared_ending(path.name, other)
        ratio = difflib.SequenceMatcher(None, path.name[:len(path.name) - shared],
                                        other[:len(other) - shared]).ratio()
        if ratio >= score:
            best, score = other, ratio
    return f" (did you mean {best!r}?)" if best else ""


def _shared_ending(a: str, b: str) -> int:
    """Return how many characters ``a`` and ``b`` share at their ends."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n
