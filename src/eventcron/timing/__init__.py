"""Timing engine: when cron, interval and one-off schedules fire.

Pure logic: no I/O and no clock reads; the current time is always an argument.
Cron expressions follow crontab(5) as cronie implements it, including how cron(8)
treats daylight-saving transitions in the schedule's own zone:

* a wall time that exists once fires at that instant;
* a wall time skipped by a spring-forward gap fires at the transition instant for a
  fixed-time job (minute and hour fields both not starting with ``*``) and not at all
  for a wildcard job;
* a wall time repeated by a fall-back overlap fires at its first occurrence for a
  fixed-time job and at both occurrences for a wildcard job.

All instants returned are aware datetimes in UTC.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

# UTC (datetime.UTC, the same object as datetime.timezone.utc) is re-exported.
__all__ = [
    "UTC",
    "AtTiming",
    "CronExpr",
    "CronSyntaxError",
    "CronTiming",
    "EveryTiming",
    "Timing",
    "iter_between",
    "jitter_delay",
    "latest_until",
    "resolve_wall",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY: Final = timedelta(days=1)
_ONE_SECOND: Final = timedelta(seconds=1)
_ONE_MICROSECOND: Final = timedelta(microseconds=1)
_ONE_MILLISECOND: Final = timedelta(milliseconds=1)
# Hours either side of a day checked for offset changes. cron(8) treats clock jumps of
# up to 3 h as DST, so no transition's effects reach further than this across midnight.
_DAY_SLACK: Final = timedelta(hours=3)
# Spacing of the offset samples taken across a day (1 h): catches a day with two
# transitions that cancel out, which comparing the day's two ends alone would miss.
_OFFSET_SAMPLE_STEP: Final = timedelta(hours=1)
# Sample offsets (h from the window's start) across the checked window of one day
# plus the slack either side (30 h, a whole number of steps).
_STEADY_WINDOW: Final = _ONE_DAY + 2 * _DAY_SLACK
_OFFSET_SAMPLES: Final = tuple(
    k * _OFFSET_SAMPLE_STEP for k in range(_STEADY_WINDOW // _OFFSET_SAMPLE_STEP + 1)
)
# Years searched for a matching day (400): the Gregorian calendar, weekdays included,
# repeats every 400 years, so a day that does not come within 400 years never comes.
_SEARCH_YEARS: Final = 400
_DAY_OFFSET_CACHE_SIZE: Final = 8192  # entries: (zone, local date) pairs
_TRANSITION_DAY_CACHE_SIZE: Final = 1024  # entries: (expression times, zone, date)
_GAP_END_CACHE_SIZE: Final = 1024  # entries: gaps located by bisection
_PARSE_CACHE_SIZE: Final = 1024  # entries: expression texts
_MAX_DIGITS: Final = 9  # digits read from a number token; longer ones are out of range
_JITTER_PERSON: Final = b"eventcron jitter"  # blake2b personalisation, at most 16 bytes

_MONTH_NAMES: Final = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)
_DOW_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_FULL_NAMES: Final = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)
# Longest length of each month in days, index 1-12; February counts 29 (leap years).
_MONTH_MAX_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronSyntaxError(ValueError):
    """Invalid cron expression.

    ``str(err)`` is one English sentence naming the field and the problem, written to
    follow a colon (it starts in lower case), e.g. ``minute 61 is out of range 0-59.``

    Attributes:
        offset: 0-based offset of the offending token in the stripped expression
            (``CronExpr.source``); 0 when no single token is to blame.
        length: Length of the offending token, at least 1.

    """

    offset: int
    length: int

    def __init__(self, message: str, offset: int = 0, length: int = 1) -> None:
        super().__init__(message)
        self.offset = max(offset, 0)
        self.length = max(length, 1)

    def __reduce__(self) -> tuple[type[CronSyntaxError], tuple[str, int, int]]:
        # Keep offset and length when the error crosses a process boundary.
        return (type(self), (str(self), self.offset, self.length))


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """How one of the five crontab fields is read."""

    label: str  # as named in messages
    lo: int
    hi: int
    names: Mapping[str, int] | None  # three-letter names, lower case
    range_note: str  # appended to out-of-range messages


_FIELD_SPECS: Final = (
    _FieldSpec("minute", 0, 59, None, ""),
    _FieldSpec("hour", 0, 23, None, ""),
    _FieldSpec("day of month", 1, 31, None, ""),
    _FieldSpec("month", 1, 12, {n: i for i, n in enumerate(_MONTH_NAMES, 1)}, ""),
    _FieldSpec("day of week", 0, 7, {n: i for i, n in enumerate(_DOW_NAMES)},
               " (0 and 7 are Sunday)"),
)
_DOW_SPEC: Final = _FIELD_SPECS[4]
# What "*" means in each field; in day of week, 7 (Sunday again) is folded into 0.
_FULL_SETS: Final = {
    spec.label: frozenset(range(spec.lo, spec.hi + 1)) for spec in _FIELD_SPECS[:4]
} | {_DOW_SPEC.label: frozenset(range(7))}
_ALL_NAMES: Final = frozenset(_MONTH_NAMES) | frozenset(_DOW_NAMES)


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed five-field cron expression (crontab(5), as cronie reads it).

    Build one with :meth:`parse`; direct construction is for tests and trusted data.
    """

    source: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool
    fixed_time: bool
    # Derived lookup tables, kept out of equality, hashing and repr.
    _minutes_t: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hours_t: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _months_t: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # Matching days of a month by (month length, weekday of the 1st): at most 28 entries.
    _month_days: dict[tuple[int, int], tuple[int, ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, values, lo, hi in (
            ("minutes", self.minutes, 0, 59), ("hours", self.hours, 0, 23),
            ("days", self.days, 1, 31), ("months", self.months, 1, 12),
            ("weekdays", self.weekdays, 0, 6),
        ):
            if not values or min(values) < lo or max(values) > hi:
                raise ValueError(f"CronExpr.{name} must be a non-empty subset of {lo}-{hi}")
        object.__setattr__(self, "_minutes_t", tuple(sorted(self.minutes)))
        object.__setattr__(self, "_hours_t", tuple(sorted(self.hours)))
        object.__setattr__(self, "_months_t", tuple(sorted(self.months)))
        object.__setattr__(self, "_month_days", {})

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        """Parse a crontab(5) expression or macro such as ``@daily``.

        Raises:
            CronSyntaxError: The expression is malformed or can never fire.

        """
        if cls is CronExpr:
            return _parse_cached(text)
        return _parse(cls, text)

    def matches_day(self, day: date) -> bool:
        """Return whether jobs run on ``day``: month matches, and the day-of-month rule.

        When both day fields are restricted either may match; otherwise both must.
        """
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """Return the first fire strictly after ``after`` in zone ``tz`` (UTC), or None.

        Raises:
            ValueError: ``after`` is naive.

        """
        return _next_fire(self, _as_utc(after, "after"), tz)

    def iter_after(self, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Yield the fires strictly after ``after`` in zone ``tz``, ascending, in UTC."""
        t = self.next_after(after, tz)
        while t is not None:
            yield t
            t = _next_fire(self, t, tz)

    def _days_in_month(self, year: int, month: int) -> tuple[int, ...]:
        """Return the matching days of one month (the month itself is not checked)."""
        length = _month_length(year, month)
        first_dow = date(year, month, 1).isoweekday() % 7
        key = (length, first_dow)
        found = self._month_days.get(key)
        if found is None:
            days, weekdays = self.days, self.weekdays
            if self.dom_restricted and self.dow_restricted:
                found = tuple(d for d in range(1, length + 1)
                              if d in days or (first_dow + d - 1) % 7 in weekdays)
            else:
                found = tuple(d for d in range(1, length + 1)
                              if d in days and (first_dow + d - 1) % 7 in weekdays)
            self._month_days[key] = found
        return found

    def _next_day(self, start: date) -> date | None:
        """Return the first matching day on or after ``start``, or None."""
        year, month, day = start.year, start.month, start.day
        months = self._months_t
        last_year = year + _SEARCH_YEARS
        while year <= last_year:
            i = bisect_left(months, month)
            if i == len(months):
                year, month, day = year + 1, months[0], 1
                if year > date.max.year:
                    return None
                continue
            if months[i] != month:
                month, day = months[i], 1
            days = self._days_in_month(year, month)
            j = bisect_left(days, day)
            if j < len(days):
                return date(year, month, days[j])
            month, day = month + 1, 1
        return None

    def _first_on_steady_day(self, day: date, offset: timedelta,
                             after: datetime) -> datetime | None:
        """Return the first fire after ``after`` on a day whose UTC offset is constant."""
        local = after + offset  # fields now read as the local wall time
        local_day = local.date()
        hours, minutes = self._hours_t, self._minutes_t
        if day < local_day:
            return None
        if day > local_day:
            hour, minute = hours[0], minutes[0]
        else:
            i = bisect_left(hours, local.hour)
            if i < len(hours) and hours[i] == local.hour:
                j = bisect_right(minutes, local.minute)
                if j < len(minutes):
                    hour, minute = hours[i], minutes[j]
                else:
                    i += 1
                    if i == len(hours):
                        return None
                    hour, minute = hours[i], minutes[0]
            elif i < len(hours):
                hour, minute = hours[i], minutes[0]
            else:
                return None
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - offset


def resolve_wall(wall: datetime, tz: ZoneInfo) -> datetime:
    """Map a naive local wall time in ``tz`` to the aware UTC instant it denotes.

    A unique wall time gives its instant; one in a DST gap gives the first instant after
    the gap (the transition instant); an ambiguous one gives its first occurrence.

    Raises:
        ValueError: ``wall`` is aware.

    """
    if wall.tzinfo is not None:
        raise ValueError(f"resolve_wall needs a naive wall time, got {wall.isoformat()}")
    local = wall.replace(tzinfo=tz)
    first = local.replace(fold=0).astimezone(UTC)
    second = local.replace(fold=1).astimezone(UTC)
    if first <= second:
        return first
    return _gap_end(tz, second, first)


@runtime_checkable
class Timing(Protocol):
    """Something that says when a schedule fires."""

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first fire strictly after aware ``after``, in UTC, or None."""
        ...


@dataclass(frozen=True, slots=True)
class CronTiming:
    """A cron expression evaluated in a zone, optionally within ``[starts, ends]``.

    ``starts`` and ``ends`` are inclusive, must be aware, and are stored in UTC.
    """

    expr: CronExpr
    tz: ZoneInfo
    starts: datetime | None = None
    ends: datetime | None = None

    def __post_init__(self) -> None:
        _normalize(self, "starts", "ends")

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first fire strictly after ``after`` within the window, or None."""
        point = _as_utc(after, "after")
        if self.starts is not None and point < self.starts:
            # Fires are whole seconds, so "after starts - 1 us" means "at or after starts".
            point = self.starts - _ONE_MICROSECOND
        found = _next_fire(self.expr, point, self.tz)
        if found is None or (self.ends is not None and found > self.ends):
            return None
        return found


@dataclass(frozen=True, slots=True)
class EveryTiming:
    """Fires at ``anchor + k * interval`` within ``[starts, ends]``.

    ``k`` is any integer, but not negative when ``starts`` is given (callers anchor at
    ``starts`` then, else at the Unix epoch, so restarts keep the same grid). The
    interval is elapsed time, not wall-clock time; instants are stored in UTC.
    """

    interval: timedelta
    anchor: datetime
    starts: datetime | None = None
    ends: datetime | None = None

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {self.interval}")
        _normalize(self, "anchor", "starts", "ends")

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first grid point strictly after ``after`` within the window, or None."""
        point = _as_utc(after, "after")
        # timedelta // timedelta is exact floor division on whole microseconds.
        k = (point - self.anchor) // self.interval + 1
        if self.starts is not None:
            k = max(k, 0, -((self.anchor - self.starts) // self.interval))
        try:
            found = self.anchor + k * self.interval
        except OverflowError:
            return None
        if self.ends is not None and found > self.ends:
            return None
        return found


@dataclass(frozen=True, slots=True)
class AtTiming:
    """Fires once, at ``instant`` (aware; stored in UTC)."""

    instant: datetime

    def __post_init__(self) -> None:
        _normalize(self, "instant")

    def next_after(self, after: datetime) -> datetime | None:
        """Return ``instant`` (in UTC) if it is strictly after ``after``, else None."""
        if _as_utc(after, "after") < self.instant:
            return self.instant
        return None


def iter_between(timing: Timing, after: datetime, until: datetime) -> Iterator[datetime]:
    """Yield the fires ``t`` of ``timing`` with ``after < t <= until``, ascending."""
    end = _as_utc(until, "until")
    t = timing.next_after(after)
    while t is not None and t <= end:
        yield t
        t = timing.next_after(t)


# Widening look-back windows for the latest cron fire: a cron expression fires at least once
# in 28 years (29 February on a given weekday), and the short windows answer almost always.
_LOOK_BACK: Final = tuple(timedelta(days=d) for d in (1 / 24, 1, 32, 367, 4 * 366, 29 * 366))


def latest_until(timing: Timing, until: datetime) -> datetime | None:
    """Return the last fire of ``timing`` at or before ``until``, or None."""
    end = _as_utc(until, "until")
    ends: datetime | None = getattr(timing, "ends", None)
    if ends is not None and ends < end:
        end = ends
    if isinstance(timing, AtTiming):
        return timing.instant if timing.instant <= end else None
    if isinstance(timing, EveryTiming):
        found = timing.anchor + ((end - timing.anchor) // timing.interval) * timing.interval
        return None if timing.starts is not None and found < timing.starts else found
    starts: datetime | None = getattr(timing, "starts", None)
    for span in _LOOK_BACK:
        after = end - span
        bounded = starts is not None and after < starts
        if bounded:
            assert starts is not None
            after = starts - _ONE_MICROSECOND
        latest = None
        for t in iter_between(timing, after, end):
            latest = t
        if latest is not None or bounded:
            return latest
    return None


def jitter_delay(schedule_id: str, app_user_id: str, nominal: datetime,
                 jitter: timedelta) -> timedelta:
    """Return a user's deterministic delay in ``[0, jitter)``, in whole milliseconds.

    The delay comes from a blake2b hash of the three values, so every process on every
    machine agrees on it; ``timedelta(0)`` when ``jitter`` is under a millisecond.

    Raises:
        ValueError: ``jitter`` is negative or ``nominal`` is naive.

    """
    if jitter < timedelta(0):
        raise ValueError(f"jitter must not be negative, got {jitter}")
    span = jitter // _ONE_MILLISECOND
    if span == 0:
        return timedelta(0)
    when = _as_utc(nominal, "nominal").isoformat()
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    text = f"{len(schedule_id)}:{schedule_id}|{len(app_user_id)}:{app_user_id}|{when}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=_JITTER_PERSON).digest()
    return timedelta(milliseconds=int.from_bytes(digest, "big") % span)


# --- internals: instants -------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    """Return aware ``value`` in UTC; raise ValueError if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _normalize(obj: object, *names: str) -> None:
    """Store a frozen dataclass's aware datetime fields in UTC; ValueError if naive.

    Same-zone datetime arithmetic is wall-clock arithmetic, wrong across DST, so every
    instant is kept in UTC.
    """
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, _as_utc(value, name))


def _month_length(year: int, month: int) -> int:
    """Return the number of days in a month."""
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return _MONTH_MAX_DAYS[month]


def _offset_at(tz: ZoneInfo, seconds: int) -> timedelta | None:
    """Return the UTC offset of ``tz`` at a POSIX time in whole seconds."""
    return (_EPOCH + timedelta(seconds=seconds)).astimezone(tz).utcoffset()


def _gap_end(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """Return the transition instant of the gap whose edges bracket ``(before, after]``."""
    lo = (before - _EPOCH) // _ONE_SECOND
    hi = -((_EPOCH - after) // _ONE_SECOND)  # ceiling
    return _gap_end_seconds(tz, lo, hi)


@lru_cache(maxsize=_GAP_END_CACHE_SIZE)
def _gap_end_seconds(tz: ZoneInfo, lo: int, hi: int) -> datetime:
    """Bisect POSIX seconds ``(lo, hi]`` for the first with the post-transition offset."""
    target = _offset_at(tz, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(tz, mid) == target:
            hi = mid
        else:
            lo = mid
    return _EPOCH + timedelta(seconds=hi)


@lru_cache(maxsize=_DAY_OFFSET_CACHE_SIZE)
def _steady_offset(tz: ZoneInfo, day: date) -> timedelta | None:
    """Return the UTC offset of local ``day`` if it holds all day (with slack), else None.

    Shared by every schedule in the zone. Days where this is None take the slow path.
    """
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    offset = midnight.utcoffset()
    assert offset is not None
    # tz.fromutc reads the fields of a tz-tagged datetime as UTC: the cheapest lookup.
    start = midnight - offset - _DAY_SLACK
    fromutc = tz.fromutc
    for delta in _OFFSET_SAMPLES:
        if fromutc(start + delta).utcoffset() != offset:
            return None
    return offset


@lru_cache(maxsize=_TRANSITION_DAY_CACHE_SIZE)
def _transition_day_fires(hours: tuple[int, ...], minutes: tuple[int, ...], fixed: bool,
                          tz: ZoneInfo, day: date) -> tuple[datetime, ...]:
    """Return the sorted fire instants of a day with an offset change, the way cron(8) does."""
    fires: set[datetime] = set()
    gap_end: datetime | None = None
    for hour in hours:
        for minute in minutes:
            wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
            first = wall.astimezone(UTC)  # fold=0: the offset in force before a transition
            second = wall.replace(fold=1).astimezone(UTC)
            if first == second:
                fires.add(first)
            elif first < second:
                # Repeated wall time: wildcard jobs run again in the repeated hour.
                fires.add(first)
                if not fixed:
                    fires.add(second)
            elif fixed:
                # Skipped wall time: cron(8) catches fixed-time jobs up at the jump.
                if gap_end is None or not second < gap_end <= first:
                    gap_end = _gap_end(tz, second, first)
                fires.add(gap_end)
    return tuple(sorted(fires))


def _next_fire(expr: CronExpr, after: datetime, tz: ZoneInfo) -> datetime | None:
    """Return the first fire of ``expr`` in ``tz`` strictly after UTC ``after``."""
    try:
        day = after.astimezone(tz).date()
        if _steady_offset(tz, day) is None:
            # Near a transition the previous date's repeated or skipped times can land
            # after `after`, so look from there.
            day -= _ONE_DAY
        best: datetime | None = None
        best_day = day
        while True:
            next_day = expr._next_day(day)
            if next_day is None:
                return best
            day = next_day
            # A date's fires all fall after the instants of dates two or more before it.
            if best is not None and (day - best_day).days >= 2:
                return best
            offset = _steady_offset(tz, day)
            if offset is not None:
                # After a steady day, later dates only fire later.
                found = expr._first_on_steady_day(day, offset, after)
                if found is not None:
                    return found if best is None or found < best else best
            else:
                fires = _transition_day_fires(expr._hours_t, expr._minutes_t,
                                              expr.fixed_time, tz, day)
                i = bisect_right(fires, after)
                if i < len(fires) and (best is None or fires[i] < best):
                    best, best_day = fires[i], day
            day += _ONE_DAY
    except OverflowError:
        # The next fire would fall outside datetime's range (year 9999).
        return None


# --- internals: parsing --------------------------------------------------------------


def _error(message: str, offset: int = 0, length: int = 1) -> CronSyntaxError:
    return CronSyntaxError(message + ".", offset, length)


def _split_fields(text: str) -> list[tuple[int, str]]:
    """Split on spaces and tabs, returning (offset, token) pairs."""
    out: list[tuple[int, str]] = []
    at = 0
    for part in text.replace("\t", " ").split(" "):
        if part:
            out.append((at, part))
        at += len(part) + 1
    return out


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _value(spec: _FieldSpec, token: str, at: int) -> int:
    """Read one number or name of a field."""
    if _is_number(token):
        # Very long digit strings are out of range anyway; int() would refuse some of them.
        n = int(token) if len(token) <= _MAX_DIGITS else None
        if n is None or not spec.lo <= n <= spec.hi:
            shown = n if n is not None else f"value of {len(token)} digits"
            raise _error(f"{spec.label} {shown} is out of range {spec.lo}-{spec.hi}"
                         f"{spec.range_note}", at, len(token))
        return n
    lower = token.lower()
    if spec.names is not None:
        found = spec.names.get(lower)
        if found is not None:
            return found
        first, last = next(iter(spec.names)), list(spec.names)[-1]
        if token.isascii() and token.isalpha():
            raise _error(f"{spec.label} {token!r} is not a {spec.label} name; use the first"
                         f" three letters ({first}-{last}) or a number"
                         f" {spec.lo}-{spec.hi}", at, len(token))
        raise _error(f"{spec.label} {token!r} is not a number or a {spec.label} name",
                     at, len(token))
    hint = ""
    if lower in _ALL_NAMES:
        hint = "; names are allowed only in the month and day-of-week fields"
    raise _error(f"{spec.label} {token!r} is not a number{hint}", at, len(token))


def _reversed_hint(spec: _FieldSpec, a_tok: str, b_tok: str, lo: int, hi: int) -> str:
    """Suggest how to write a range that wraps around the end of the field."""
    top, bottom = (6, 0) if spec is _DOW_SPEC else (spec.hi, spec.lo)
    names = list(spec.names) if spec.names is not None else None
    if spec is not _DOW_SPEC and names is not None:
        names.insert(0, "")  # month names are numbered from 1
    top_tok = names[top] if names is not None and a_tok.isalpha() else str(top)
    bottom_tok = names[bottom] if names is not None and b_tok.isalpha() else str(bottom)
    head = a_tok if lo == top else f"{a_tok}-{top_tok}"
    tail = b_tok if hi == bottom else f"{bottom_tok}-{b_tok}"
    hint = f"use {head},{tail}"
    if spec is _DOW_SPEC and hi == 0:
        hint += f" or {lo}-7"
    return hint


def _parse_element(spec: _FieldSpec, elem: str, at: int) -> range:
    """Expand one list element: ``*``, ``N``, ``N-M``, ``*/S`` or ``N-M/S``."""
    slash = elem.find("/")
    step = 1
    base = elem
    if slash >= 0:
        base, step_tok = elem[:slash], elem[slash + 1:]
        step_at = at + slash + 1
        if not step_tok:
            raise _error(f"{spec.label} element {elem!r} has no step after '/'",
                         at + slash, 1)
        if "/" in step_tok:
            extra = step_tok.index("/")
            raise _error(f"{spec.label} element {elem!r} has more than one '/'",
                         step_at + extra, 1)
        if not _is_number(step_tok):
            raise _error(f"{spec.label} step {step_tok!r} is not a whole number",
                         step_at, len(step_tok))
        step = int(step_tok) if len(step_tok) <= _MAX_DIGITS else spec.hi + 1
        if step == 0:
            raise _error(f"{spec.label} step 0 is invalid; a step must be at least 1",
                         step_at, len(step_tok))
        if step > spec.hi:
            shown = step_tok if len(step_tok) <= _MAX_DIGITS else f"of {len(step_tok)} digits"
            raise _error(f"{spec.label} step {shown} is too large; the largest allowed is"
                         f" {spec.hi}", step_at, len(step_tok))
        if not base:
            raise _error(f"{spec.label} element {elem!r} has no range before '/'; use"
                         f" */{step}", at, len(elem))
    if base == "*":
        return range(spec.lo, spec.hi + 1, step)
    if base.startswith("*"):
        raise _error(f"{spec.label} element {elem!r} is not valid; '*' must stand alone"
                     " or be followed by /step", at, len(elem))
    dash = base.find("-")
    if dash < 0:
        n = _value(spec, base, at)
        if slash >= 0:
            # Vixie cron and cronie reject "N/S"; its meaning would be unclear anyway.
            raise _error(f"{spec.label} element {elem!r} has a step but no range; use"
                         f" {base}-{spec.hi}/{step}", at, len(elem))
        return range(n, n + 1)
    a_tok, b_tok = base[:dash], base[dash + 1:]
    if not a_tok:
        raise _error(f"{spec.label} range {base!r} is missing its start value", at,
                     len(base))
    if not b_tok:
        raise _error(f"{spec.label} range {base!r} is missing its end value", at,
                     len(base))
    if "-" in b_tok:
        raise _error(f"{spec.label} range {base!r} has more than one '-'",
                     at + dash + 1 + b_tok.index("-"), 1)
    lo = _value(spec, a_tok, at)
    hi = _value(spec, b_tok, at + dash + 1)
    if lo > hi:
        hint = ("write the smaller value first" if step > 1
                else _reversed_hint(spec, a_tok, b_tok, lo, hi))
        raise _error(f"{spec.label} range {base!r} is reversed; ranges run from low to"
                     f" high, so {hint}", at, len(base))
    return range(lo, hi + 1, step)


def _parse_field(spec: _FieldSpec, text: str, at: int) -> frozenset[int]:
    """Expand a comma-separated field into its set of values."""
    if text == "*":
        return _FULL_SETS[spec.label]
    values: set[int] = set()
    start = 0
    while True:
        comma = text.find(",", start)
        end = len(text) if comma < 0 else comma
        if end == start:
            # Blame the comma that leaves the element empty (leading, doubled or trailing).
            blame = start if start < len(text) else start - 1
            raise _error(f"the {spec.label} field has an empty list element (check the"
                         " commas)", at + blame, 1)
        values.update(_parse_element(spec, text[start:end], at + start))
        if comma < 0:
            break
        start = comma + 1
    if spec is _DOW_SPEC and 7 in values:
        values.discard(7)
        values.add(0)  # 7 is Sunday, as 0 is
    return frozenset(values)


def _describe_days(values: frozenset[int]) -> str:
    ordered = sorted(values)
    if len(ordered) == 1:
        return f"day of month {ordered[0]}"
    return "days of month " + ",".join(map(str, ordered))


def _never_fires(days: frozenset[int], months: frozenset[int], token: str,
                 at: int) -> CronSyntaxError:
    named = [_MONTH_FULL_NAMES[m - 1] for m in sorted(months)]
    where = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
    verb = "does" if len(days) == 1 else "do"
    return _error(f"the expression never fires: {_describe_days(days)} {verb} not exist"
                  f" in {where}", at, len(token))


def _parse(cls: type[CronExpr], text: str) -> CronExpr:
    source = text.strip()
    tokens = _split_fields(source)
    if not tokens:
        raise _error("the expression is empty; write five fields: minute hour"
                     " day-of-month month day-of-week")
    if tokens[0][1].startswith("@"):
        macro_at, macro = tokens[0]
        if len(tokens) > 1:
            extra_at = tokens[1][0]
            raise _error(f"the macro {macro!r} must stand alone, without other fields",
                         extra_at, len(source) - extra_at)
        name = macro.lower()
        if name == "@reboot":
            raise _error("@reboot is not supported: eventcron has no reboot to run at; use"
                         " a one-off 'at:' time or a cron expression", macro_at, len(macro))
        expansion = _MACROS.get(name)
        if expansion is None:
            known = ", ".join(_MACROS)
            raise _error(f"the macro {macro!r} is unknown; the valid macros are {known}",
                         macro_at, len(macro))
        tokens = _split_fields(expansion)
    if len(tokens) != 5:
        count = f"{len(tokens)} field{'s' * (len(tokens) != 1)}"
        wanted = "5 (minute hour day-of-month month day-of-week)"
        if len(tokens) > 5:
            extra_at = tokens[5][0]
            seconds = "; seconds fields are not supported" if len(tokens) == 6 else ""
            raise _error(f"the expression has {count}, but cron takes {wanted}{seconds}",
                         extra_at, len(source) - extra_at)
        raise _error(f"the expression has {count}, but cron takes {wanted}", len(source), 1)
    sets = [
        _parse_field(spec, token, at)
        for spec, (at, token) in zip(_FIELD_SPECS, tokens, strict=True)
    ]
    minute_tok, hour_tok, dom_tok, _, dow_tok = (token for _, token in tokens)
    dom_restricted = not dom_tok.startswith("*")
    dow_restricted = not dow_tok.startswith("*")
    if dom_restricted and not dow_restricted:
        shortest = min(sets[2])
        if all(shortest > _MONTH_MAX_DAYS[m] for m in sets[3]):
            raise _never_fires(sets[2], sets[3], dom_tok, tokens[2][0])
    return cls(
        source=source,
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=sets[4],
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        fixed_time=not minute_tok.startswith("*") and not hour_tok.startswith("*"),
    )


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_cached(text: str) -> CronExpr:
    # CronExpr is immutable (its day table is a memo), so parses can be shared.
    return _parse(CronExpr, text)
