"""Walking a timing's fires: the one "occurrences between two instants", and the latest.

:func:`fires_after` is the only loop over ``Timing.next_after`` in eventcron: catch-up,
``eventcron next`` and the tests all walk fires through it. :func:`latest_until` looks
back from an instant. Pure: the instants are always arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final

from eventcron.timing.kinds import AtTiming, EveryTiming, Timing
from eventcron.timing.walltime import as_utc

_ONE_MICROSECOND: Final = timedelta(microseconds=1)
# Widening look-back windows for the latest cron fire: a cron expression fires at least once
# in 28 years (29 February on a given weekday), and the short windows answer almost always.
_LOOK_BACK: Final = tuple(timedelta(days=d) for d in (1 / 24, 1, 32, 367, 4 * 366, 29 * 366))


def fires_after(timing: Timing, after: datetime,
                until: datetime | None = None) -> Iterator[datetime]:
    """Yield the fires ``t`` of ``timing`` with ``after < t <= until``, ascending, in UTC.

    Without ``until`` the walk is unbounded: it ends only when the timing has no more
    fires, so take what you need from it. ``after`` and ``until`` must be aware
    (ValueError otherwise, raised when iteration starts).
    """
    if until is None:
        t = timing.next_after(after)
        while t is not None:
            yield t
            t = timing.next_after(t)
        return
    end = as_utc(until, "until")
    t = timing.next_after(after)
    while t is not None and t <= end:
        yield t
        t = timing.next_after(t)


def latest_until(timing: Timing, until: datetime) -> datetime | None:
    """Return the last fire of ``timing`` at or before ``until``, or None."""
    end = as_utc(until, "until")
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
        for t in fires_after(timing, after, end):
            latest = t
        if latest is not None or bounded:
            return latest
    return None
