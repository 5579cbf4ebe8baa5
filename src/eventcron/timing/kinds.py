"""Timing kinds: the :class:`Timing` protocol and the three ways a schedule says when.

:class:`CronTiming` (an expression in a zone), :class:`EveryTiming` (a fixed interval on
a grid) and :class:`AtTiming` (one instant). Each answers ``next_after``; walking many
fires is :mod:`eventcron.timing.occurrences`. Pure: the time is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from eventcron.timing.cron import CronExpr, next_fire
from eventcron.timing.walltime import as_utc, normalize

_ONE_MICROSECOND: Final = timedelta(microseconds=1)


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
        normalize(self, "starts", "ends")

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first fire strictly after ``after`` within the window, or None."""
        point = as_utc(after, "after")
        if self.starts is not None and point < self.starts:
            # Fires are whole seconds, so "after starts - 1 us" means "at or after starts".
            point = self.starts - _ONE_MICROSECOND
        found = next_fire(self.expr, point, self.tz)
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
        normalize(self, "anchor", "starts", "ends")

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first grid point strictly after ``after`` within the window, or None."""
        point = as_utc(after, "after")
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
        normalize(self, "instant")

    def next_after(self, after: datetime) -> datetime | None:
        """Return ``instant`` (in UTC) if it is strictly after ``after``, else None."""
        if as_utc(after, "after") < self.instant:
            return self.instant
        return None
