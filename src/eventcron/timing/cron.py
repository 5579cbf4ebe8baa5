"""Cron expressions and when they fire: the expression object and its next-fire engine.

Holds :class:`CronExpr` (the parsed field sets, day matching, the parse cache) and
``next_fire``, the search for the next fire in a zone. It follows how cronie's cron(8)
treats daylight-saving transitions in the schedule's own zone:

* a wall time that exists once fires at that instant;
* a wall time skipped by a spring-forward gap fires at the transition instant for a
  fixed-time job (minute and hour fields both not starting with ``*``) and not at all
  for a wildcard job;
* a wall time repeated by a fall-back overlap fires at its first occurrence for a
  fixed-time job and at both occurrences for a wildcard job.

Pure: the time is always an argument. Syntax lives in :mod:`eventcron.timing.cronsyntax`,
zone offsets and gaps in :mod:`eventcron.timing.walltime`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from eventcron.timing.cronsyntax import MONTH_MAX_DAYS, parse_into
from eventcron.timing.walltime import as_utc, gap_end, steady_offset

_ONE_DAY: Final = timedelta(days=1)
# Years searched for a matching day (400): the Gregorian calendar, weekdays included,
# repeats every 400 years, so a day that does not come within 400 years never comes.
_SEARCH_YEARS: Final = 400
_TRANSITION_DAY_CACHE_SIZE: Final = 1024  # entries: (expression times, zone, date)
_PARSE_CACHE_SIZE: Final = 1024  # entries: expression texts


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
        return parse_into(cls, text)

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
        return next_fire(self, as_utc(after, "after"), tz)

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


def next_fire(expr: CronExpr, after: datetime, tz: ZoneInfo) -> datetime | None:
    """Return the first fire of ``expr`` in ``tz`` strictly after ``after``, or None.

    ``after`` must already be aware and in UTC (see :func:`.walltime.as_utc`): this is
    the hot path, so it is not checked again here.
    """
    try:
        day = after.astimezone(tz).date()
        if steady_offset(tz, day) is None:
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
            offset = steady_offset(tz, day)
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


@lru_cache(maxsize=_TRANSITION_DAY_CACHE_SIZE)
def _transition_day_fires(hours: tuple[int, ...], minutes: tuple[int, ...], fixed: bool,
                          tz: ZoneInfo, day: date) -> tuple[datetime, ...]:
    """Return the sorted fire instants of a day with an offset change, the way cron(8) does."""
    fires: set[datetime] = set()
    jump: datetime | None = None  # the transition instant of the day's gap
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
                if jump is None or not second < jump <= first:
                    jump = gap_end(tz, second, first)
                fires.add(jump)
    return tuple(sorted(fires))


def _month_length(year: int, month: int) -> int:
    """Return the number of days in a month."""
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return MONTH_MAX_DAYS[month]


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_cached(text: str) -> CronExpr:
    # CronExpr is immutable (its day table is a memo), so parses can be shared.
    return parse_into(CronExpr, text)
