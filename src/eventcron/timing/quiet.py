"""Quiet hours: a daily window of local wall time, as instants across DST changes.

A window ``[start, end)`` of wall time (``start > end`` crosses midnight) holds an instant
when the recipient's clock shows a time inside it. :func:`quiet_end` says when the clock
leaves the window: the next local ``end`` wall time, resolved with
:func:`~eventcron.timing.walltime.resolve_wall`, so an ``end`` in a spring-forward gap
ends the window at the gap (the first instant after it).

An autumn fold shows some wall times twice; the window follows the clock, so the time
the clock shows is never inside the window when something is sent:

* an ``end`` in a fold ends the window at its first occurrence; when the clock falls back
  into the window, the window holds again until ``end`` shows a second time;
* a ``start`` in a fold opens the window at its first occurrence; when the clock falls
  back before ``start``, the window is left until ``start`` shows again.

Pure: reads only ``zoneinfo`` data, never the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from eventcron.timing.walltime import as_utc, gap_end, resolve_wall, steady_offset

_ONE_DAY: Final = timedelta(days=1)
# Spacing of the offset samples that find clock changes (as timing.walltime samples): two
# changes within one step would be missed; no zone has had them.
_SAMPLE_STEP: Final = timedelta(hours=1)
# Days after the start's local date searched for the next edge: a window is shorter than
# a day, and a skipped day (Pacific/Apia, 2011-12-30) may push the edge one further.
_EDGE_DAYS: Final = 4


def in_quiet_hours(start: time, end: time, zone: ZoneInfo, at: datetime) -> bool:
    """Tell whether the wall clock of ``zone`` shows a time in ``[start, end)`` at ``at``.

    ``start > end`` is a window across midnight. ``start == end`` is an empty window.
    """
    return _inside(start, end, as_utc(at, "at").astimezone(zone).time())


def quiet_end(start: time, end: time, zone: ZoneInfo, at: datetime) -> datetime | None:
    """Return when the window ``at`` falls in ends (aware, UTC), or None if ``at`` is outside.

    The end is the first instant after ``at`` whose wall time is outside the window: the
    next local ``end`` (:func:`resolve_wall`; in a fold, the occurrence after ``at``), or
    a clock change that jumps out of the window before it.
    """
    at = as_utc(at, "at")
    if not _inside(start, end, at.astimezone(zone).time()):
        return None
    return _next_edge(start, end, zone, at, end, inside=False)


def quiet_start(start: time, end: time, zone: ZoneInfo, at: datetime) -> datetime:
    """Return the first instant at or after ``at`` inside the window (aware, UTC).

    ``at`` itself when it is inside; else the next local ``start`` (:func:`resolve_wall`),
    or a clock change that jumps into the window before it.

    Raises:
        ValueError: the window is empty (``start == end``).

    """
    if start == end:
        raise ValueError(f"the quiet window {start:%H:%M}-{end:%H:%M} is empty")
    at = as_utc(at, "at")
    if _inside(start, end, at.astimezone(zone).time()):
        return at
    return _next_edge(start, end, zone, at, start, inside=True)


def quiet_spans(start: time, end: time, zone: ZoneInfo, since: datetime,
                until: datetime) -> list[tuple[datetime, datetime]]:
    """Return the windows met by ``[since, until]`` as ``(from, to)`` instants, in order.

    The first window is cut at ``since`` when it began before; each ``to`` is the window's
    true end (:func:`quiet_end`). An instant ``t`` in ``[since, until]`` is inside the
    window exactly when some ``from <= t < to``.
    """
    spans: list[tuple[datetime, datetime]] = []
    if start == end:
        return spans
    t, last = as_utc(since, "since"), as_utc(until, "until")
    while t <= last:
        stop = quiet_end(start, end, zone, t)
        if stop is None:
            t = quiet_start(start, end, zone, t)
            continue
        spans.append((t, stop))
        t = stop
    return spans


def _inside(start: time, end: time, wall: time) -> bool:
    if start <= end:
        return start <= wall < end
    return wall >= start or wall < end


def _next_edge(start: time, end: time, zone: ZoneInfo, at: datetime, edge: time, *,
               inside: bool) -> datetime:
    """Return the first instant after ``at`` where being inside the window becomes ``inside``.

    The clock crosses into or out of the window either by showing ``edge`` or by a clock
    change that lands on the other side; the earliest of those after ``at`` wins.
    """
    first = at.astimezone(zone).date()
    found: datetime | None = None
    for n in range(_EDGE_DAYS):
        for candidate in _occurrences(first + n * _ONE_DAY, edge, zone):
            if candidate > at and _inside(start, end, _wall(candidate, zone)) == inside:
                found = candidate if found is None else min(found, candidate)
        if found is not None:
            break
    if found is None:  # pragma: no cover - every zone shows every wall time within days
        raise ValueError(f"no {edge:%H:%M} in {zone.key} within {_EDGE_DAYS} days of {at}")
    for change in _clock_changes(zone, at, found):
        if _inside(start, end, _wall(change, zone)) == inside:
            return change
    return found


def _occurrences(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """Return the instants (UTC) the clock shows ``wall`` on ``day``; in a gap, its end."""
    naive = datetime.combine(day, wall)
    first = resolve_wall(naive, zone)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if second > first and second.astimezone(zone).replace(tzinfo=None) == naive:
        return [first, second]  # a fold: the wall time shows twice
    return [first]


def _wall(instant: datetime, zone: ZoneInfo) -> time:
    return instant.astimezone(zone).time()


def _clock_changes(zone: ZoneInfo, after: datetime, before: datetime) -> list[datetime]:
    """Return the instants in ``(after, before)`` where the zone's UTC offset changes."""
    day, last = after.astimezone(zone).date(), before.astimezone(zone).date()
    steady = True
    while day <= last:
        # Cached per (zone, day) and shared with the cron engine: most days have no change.
        if steady_offset(zone, day) is None:
            steady = False
            break
        day += _ONE_DAY
    if steady:
        return []
    changes: list[datetime] = []
    prev, prev_offset = after, after.astimezone(zone).utcoffset()
    while prev < before:
        t = min(prev + _SAMPLE_STEP, before)
        offset = t.astimezone(zone).utcoffset()
        if offset != prev_offset:
            change = gap_end(zone, prev, t)
            if after < change < before:
                changes.append(change)
        prev, prev_offset = t, offset
    return changes
