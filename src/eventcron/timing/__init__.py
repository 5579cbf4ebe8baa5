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
* :mod:`.quiet`: quiet hours, a daily window of local wall time: :func:`in_quiet_hours`,
  :func:`quiet_end`, :func:`quiet_start`, :func:`quiet_spans`.
* :mod:`.windows`: the local hour, day or week an instant falls in (:func:`window_of`).
* :mod:`.holidays`: public holidays by region (the ``holidays`` package, loaded on use).
"""

from __future__ import annotations

from datetime import UTC

from eventcron.timing.cron import CronExpr
from eventcron.timing.cronsyntax import CronSyntaxError
from eventcron.timing.jitter import jitter_delay
from eventcron.timing.kinds import AtTiming, CronTiming, EveryTiming, Timing
from eventcron.timing.occurrences import fires_after, latest_until
from eventcron.timing.quiet import in_quiet_hours, quiet_end, quiet_spans, quiet_start
from eventcron.timing.walltime import resolve_wall
from eventcron.timing.windows import Window, WindowUnit, window_of

# UTC (datetime.UTC, the same object as datetime.timezone.utc) is re-exported.
__all__ = [
    "UTC",
    "AtTiming",
    "CronExpr",
    "CronSyntaxError",
    "CronTiming",
    "EveryTiming",
    "Timing",
    "Window",
    "WindowUnit",
    "fires_after",
    "in_quiet_hours",
    "jitter_delay",
    "latest_until",
    "quiet_end",
    "quiet_spans",
    "quiet_start",
    "resolve_wall",
    "window_of",
]
