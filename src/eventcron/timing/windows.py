"""Calendar windows of a zone: the local hour, day or week an instant falls in.

A window runs from the instant the zone's clock first shows its first wall time to the
instant it first shows the next window's, both resolved with
:func:`~eventcron.timing.walltime.resolve_wall`; so windows follow each other without
gap or overlap, and a local day lasts 23 or 25 hours on a DST change (local midnight to
the next local midnight). Weeks start on Monday 00:00 local. Where the clock falls back
across a window's edge, the repeated wall times stay in the window they were first shown
in (the clock's latest time so far decides), so an instant is in exactly one window.

Pure: reads only ``zoneinfo`` data, never the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from eventcron.timing.walltime import as_utc, gap_end, resolve_wall

WindowUnit = Literal["h", "day", "week"]

_STEP: Final[dict[str, timedelta]] = {
    "h": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1),
}
_ONE_MICROSECOND: Final = timedelta(microseconds=1)


class Window(NamedTuple):
    """One local hour, day or week of a zone, as instants."""

    start: datetime  # aware, UTC: the first instant of the window
    end: datetime  # aware, UTC: the first instant after it
    label: str  # for messages: "2026-12-07 (Europe/Berlin)"


def window_of(unit: WindowUnit, zone: ZoneInfo, at: datetime) -> Window:
    """Return the local hour (``h``), ``day`` or ``week`` of ``zone`` that ``at`` falls in.

    Raises:
        ValueError: ``at`` is naive or ``unit`` is unknown.

    """
    if unit not in _STEP:
        raise ValueError(f"unknown window unit {unit!r}; use h, day or week")
    at = as_utc(at, "at")
    local = at.astimezone(zone)
    window = _bucket(unit, zone, local.replace(tzinfo=None))
    if window.end <= at:
        # ``at`` is on the second pass of a fold that repeats a window's edge: it belongs
        # to the window of the latest wall time shown before the clock fell back.
        first_pass = local.replace(fold=0).astimezone(UTC)
        change = gap_end(zone, first_pass, at)
        latest = (change - _ONE_MICROSECOND).astimezone(zone).replace(tzinfo=None)
        window = _bucket(unit, zone, latest)
    return window


def _bucket(unit: WindowUnit, zone: ZoneInfo, wall: datetime) -> Window:
    """Return the window whose wall times include naive ``wall``."""
    if unit == "h":
        first = wall.replace(minute=0, second=0, microsecond=0)
    else:
        first = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "week":
            first -= timedelta(days=first.weekday())
    after = first + _STEP[unit]
    if unit == "h":
        label = f"{first:%Y-%m-%d %H:%M}-{after:%H:%M}"
    elif unit == "day":
        label = f"{first:%Y-%m-%d}"
    else:
        label = f"the week of {first:%Y-%m-%d}"
    return Window(resolve_wall(first, zone), resolve_wall(after, zone),
                  f"{label} ({zone.key})")
