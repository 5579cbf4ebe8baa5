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

from eventcron.clock import rfc3339
from eventcron.config import Config, Schedule
from eventcron.config.audience import Member
from eventcron.timing import Timing, fires_after, jitter_delay, latest_until


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


def _labelled(timing: Timing, zone: str, after: datetime) -> Iterator[tuple[datetime, str]]:
    for t in fires_after(timing, after):
        yield t, zone


def upcoming(schedule: Schedule, after: datetime, count: int,
             user: Member | None = None) -> list[Fire]:
    """Return the next ``count`` fires of a schedule, merged across its zones.

    With ``user``, only the zone that user is served in, and ``send_at`` includes the
    user's jitter.
    """
    zones = [schedule.zone_of(user)] if user is not None else list(schedule.zones())
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


class NoSuchOccurrence(ValueError):
    """The occurrence asked for is not one of the schedule's; the message says the nearest."""


def occurrences_to_fire(schedule: Schedule, now: datetime,
                        wanted: datetime | None = None) -> list[tuple[Job, datetime]]:
    """Pick the occurrence ``eventcron fire`` sends, per job (zone) of the schedule.

    Without ``wanted``: each job's latest occurrence not after ``now``. With it: the jobs
    that have an occurrence at exactly that instant.
    """
    jobs_ = schedule_jobs(schedule)
    if wanted is None:
        picked = [(job, t) for job in jobs_ if (t := latest_until(job.timing, now)) is not None]
        if not picked:
            after = _soonest(job.timing.next_after(now) for job in jobs_)
            then = f"; its first is {rfc3339(after)}" if after else ""
            raise NoSuchOccurrence(f"schedule {schedule.id!r} has no occurrence at or before"
                                   f" now{then}.")
        return picked
    picked = [(job, wanted) for job in jobs_
              if job.timing.next_after(wanted - timedelta(microseconds=1)) == wanted]
    if picked:
        return picked
    before = [t for job in jobs_ if (t := latest_until(job.timing, wanted)) is not None]
    after = _soonest(job.timing.next_after(wanted) for job in jobs_)
    near = [rfc3339(t) for t in (max(before) if before else None, after) if t is not None]
    nearest = f"; the nearest are {' and '.join(near)}" if len(near) == 2 else (
        f"; the nearest is {near[0]}" if near else "; it has none")
    raise NoSuchOccurrence(f"{rfc3339(wanted)} is not an occurrence of schedule"
                           f" {schedule.id!r}{nearest}.")


def _soonest(times: Iterator[datetime | None]) -> datetime | None:
    found = [t for t in times if t is not None]
    return min(found) if found else None


def never_firing(config: Config, now: datetime) -> list[str]:
    """Return a warning, ``file:line: ...``, for each enabled schedule that will never fire."""
    out = []
    for s in config.schedules:
        if not s.enabled or any(job.timing.next_after(now) is not None
                                for job in schedule_jobs(s)):
            continue
        if s.at is not None:
            why = f"its at: ({s.at.isoformat()}) is already past"
        else:
            ends = s.ends.isoformat() if s.ends else ""
            gone = all(getattr(job.timing, "ends", now) <= now for job in schedule_jobs(s))
            why = (f"its ends: ({ends}) is already past" if gone
                   else f"it has no occurrence left before its ends: ({ends})")
        out.append(f"{config.path}:{s.line}: warning: schedule {s.id!r}: {why}; it will never"
                   " fire.")
    return out
