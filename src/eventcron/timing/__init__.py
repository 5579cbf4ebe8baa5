"""Timing engine: when cron, interval and one-off schedules fire.

Pure logic: no I/O and no clock reads; the current time is always an argument. All
instants returned are aware datetimes in UTC. Cron expressions follow crontab(5) as
cronie implements it, daylight-saving rules included. The modules, in dependency order:

* :mod:`.walltime`: aware instants kept in UTC; wall time to UTC across DST gaps and
  overlaps (:func:`resolve_wall`); zone offset lookups.
* :mod:`.cronsyntax`: the crontab(5) text and its errors (:class:`CronSyntaxError`).
* :mod:`.cron`: :class:`CronExpr` and its next-fire engine with cron(8)'s DST rules.
* :mod:`.kinds`: the :class:`Timing` protocol, :class:`CronTiming`,
  :class:`EveryTiming`, :class:`AtTiming`.
* :mod:`.occurrences`: :func:`fires_after` (every fire in ``(after, until]``) and
  :func:`latest_until`.
* :mod:`.jitter`: :func:`jitter_delay`.
"""

from __future__ import annotations

from datetime import UTC

from eventcron.timing.cron import CronExpr
from eventcron.timing.cronsyntax import CronSyntaxError
from eventcron.timing.jitter import jitter_delay
from eventcron.timing.kinds import AtTiming, CronTiming, EveryTiming, Timing
from eventcron.timing.occurrences import fires_after, latest_until
from eventcron.timing.walltime import resolve_wall

# UTC (datetime.UTC, the same object as datetime.timezone.utc) is re-exported.
__all__ = [
    "UTC",
    "AtTiming",
    "CronExpr",
    "CronSyntaxError",
    "CronTiming",
    "EveryTiming",
    "Timing",
    "fires_after",
    "jitter_delay",
    "latest_until",
    "resolve_wall",
]
