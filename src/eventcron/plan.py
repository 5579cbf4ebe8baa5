"""The plan: a validated config unfolded into jobs, one per (schedule, time zone).

A schedule with ``timezone: user`` becomes one job per zone its audience uses, never one
per user. Jobs are what the scheduler clocks and what ``eventcron next`` lists.
"""

from __future__ import annotations

import heapq
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from eventcron.audience import Member
from eventcron.config import DEFAULT_ZONE, USER_ZONE, Config, Schedule
from eventcron.timing import Timing, jitter_delay


@dataclass(frozen=True, slots=True)
class Job:
    """One clocked unit: a schedule in one zone."""

    schedule: Schedule
    zone: str
    timing: Timing

    @property
    def key(self) -> str:
        """Return a stable name for the job, ``schedule@zone``."""
        return f"{self.schedule.id}@{self.zone}"


@dataclass(frozen=True, slots=True)
class Fire:
    """One occurrence of a job: its nominal time and, for one user, when it is sent."""

    schedule: str
    zone: str
    nominal: datetime  # aware, UTC
    send_at: datetime  # nominal plus the user's jitter (nominal when no user is given)

    def local(self) -> datetime:
        """Return the nominal time in the job's zone."""
        return self.nominal.astimezone(zoneinfo.ZoneInfo(self.zone))


def jobs(config: Config) -> list[Job]:
    """Return the jobs of every enabled schedule."""
    return [job for s in config.schedules if s.enabled for job in schedule_jobs(s)]


def schedule_jobs(schedule: Schedule) -> list[Job]:
    """Return a schedule's jobs, one per zone it fires in."""
    return [Job(schedule, zone, schedule.timing(zone)) for zone in schedule.zones()]


def iter_fires(timing: Timing, after: datetime) -> Iterator[datetime]:
    """Yield a timing's fire times strictly after ``after``, ascending."""
    t = timing.next_after(after)
    while t is not None:
        yield t
        t = timing.next_after(t)


def _labelled(timing: Timing, zone: str, after: datetime) -> Iterator[tuple[datetime, str]]:
    for t in iter_fires(timing, after):
        yield t, zone


def upcoming(schedule: Schedule, after: datetime, count: int,
             user: Member | None = None) -> list[Fire]:
    """Return the next ``count`` fires of a schedule, merged across its zones.

    With ``user``, only the zone that user is served in, and ``send_at`` includes the
    user's jitter.
    """
    if user is not None:
        zone = (user.timezone or DEFAULT_ZONE) if schedule.timezone == USER_ZONE else (
            schedule.timezone)
        zones = [zone]
    else:
        zones = list(schedule.zones())
    streams = [_labelled(schedule.timing(zone), zone, after) for zone in zones]
    out: list[Fire] = []
    for nominal, zone in heapq.merge(*streams):
        delay = timedelta(0)
        if user is not None and schedule.jitter:
            delay = jitter_delay(schedule.id, user.id, nominal,
                                 timedelta(seconds=schedule.jitter))
        out.append(Fire(schedule.id, zone, nominal, nominal + delay))
        if len(out) >= count:
            break
    return out
