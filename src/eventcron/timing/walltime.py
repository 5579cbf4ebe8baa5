"""Wall clock and UTC: aware instants kept in UTC, wall times resolved across DST.

Holds the checks that keep every instant aware and in UTC, :func:`resolve_wall`, and the
zone offset lookups the cron engine uses to find days with and without a transition
(with their caches). Pure: reads only ``zoneinfo`` data, never the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY: Final = timedelta(days=1)
_ONE_SECOND: Final = timedelta(seconds=1)
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
_DAY_OFFSET_CACHE_SIZE: Final = 8192  # entries: (zone, local date) pairs
_GAP_END_CACHE_SIZE: Final = 1024  # entries: gaps located by bisection


def as_utc(value: datetime, name: str) -> datetime:
    """Return aware ``value`` in UTC; raise ValueError (naming ``name``) if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def normalize(obj: object, *names: str) -> None:
    """Store a frozen dataclass's aware datetime fields in UTC; ValueError if naive.

    Same-zone datetime arithmetic is wall-clock arithmetic, wrong across DST, so every
    instant is kept in UTC.
    """
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, as_utc(value, name))


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
    return gap_end(tz, second, first)


def gap_end(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """Return the transition instant of the gap whose edges bracket ``(before, after]``."""
    lo = (before - _EPOCH) // _ONE_SECOND
    hi = -((_EPOCH - after) // _ONE_SECOND)  # ceiling
    return _gap_end_seconds(tz, lo, hi)


@lru_cache(maxsize=_DAY_OFFSET_CACHE_SIZE)
def steady_offset(tz: ZoneInfo, day: date) -> timedelta | None:
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


def _offset_at(tz: ZoneInfo, seconds: int) -> timedelta | None:
    """Return the UTC offset of ``tz`` at a POSIX time in whole seconds."""
    return (_EPOCH + timedelta(seconds=seconds)).astimezone(tz).utcoffset()


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
