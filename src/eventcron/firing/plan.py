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
from typing import TYPE_CHECKING, Final

from eventcron.clock import rfc3339
from eventcron.config import Config, Schedule
from eventcron.config.audience import Member
from eventcron.timing import Timing, fires_after, jitter_delay, latest_until

if TYPE_CHECKING:  # the rules are handed in; firing never needs them to import this module
    from eventcron.campaign import Rules

MAX_SKIPPED_AHEAD: Final = 100_000  # occurrences `next` passes over while all are skipped


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
    """One occurrence of a job: its nominal time and, for one user, when it is sent.

    With the campaign rules applied (:func:`upcoming` given ``rules``), ``skipped`` says
    why nothing is sent (to anyone, or to the user), ``expired`` why the user's event
    would expire held by quiet hours, and ``held`` that quiet hours moved ``send_at``.
    """

    schedule: str
    zone: str  # the job's zone; for one user, the recipient's (where the rules decide)
    nominal: datetime  # aware, UTC
    send_at: datetime  # plus the user's jitter, then past quiet hours (nominal without a user)
    skipped: str | None = None  # "holiday: Christmas Day (DE)", "skip date ...", "opted out"
    expired: str | None = None  # the reason the user's row would end expired
    held: bool = False  # send_at is the end of a quiet window, not nominal plus jitter

    def local(self) -> datetime:
        """Return the nominal time in the fire's zone (the recipient's, for a user's fire)."""
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
             user: Member | None = None, *, rules: Rules | None = None,
             expires_after: timedelta = timedelta(0), everyone_skipped: bool = False,
             ) -> list[Fire]:
    """Return the next ``count`` fires of a schedule, merged across its zones.

    With ``user``, only the zone that user is served in, and ``send_at`` includes the
    user's jitter. With ``rules`` (``expires_after`` is ``delivery.expires_after``), each
    fire is judged as the daemon will: for ``user``, quiet hours move ``send_at`` and a
    skip, holiday or opt-out fills ``skipped``; without one, occurrences skipped for
    everyone are passed over (at most :data:`MAX_SKIPPED_AHEAD` in a row) unless
    ``everyone_skipped``, which lists them with ``skipped``.
    """
    zones = [schedule.zone_of(user)] if user is not None else list(schedule.zones())
    streams = [_labelled(schedule.timing(zone), zone, after) for zone in zones]
    out: list[Fire] = []
    passed = 0
    for nominal, zone in heapq.merge(*streams):
        delay = timedelta(0)
        if user is not None and schedule.jitter:
            delay = jitter_delay(schedule.id, user.id, nominal,
                                 timedelta(seconds=schedule.jitter))
        fire = Fire(schedule.id, zone, nominal, nominal + delay)
        if rules is not None:
            fire = judged(fire, schedule, rules, user, expires_after)
            if user is None and fire.skipped is not None and not everyone_skipped:
                passed += 1
                if passed >= MAX_SKIPPED_AHEAD:
                    break
                continue
        passed = 0
        out.append(fire)
        if len(out) >= count:
            break
    return out


def judged(fire: Fire, schedule: Schedule, rules: Rules, user: Member | None,
           expires_after: timedelta) -> Fire:
    """Return ``fire`` with what the campaign rules make of it (see :class:`Fire`).

    The firer's order: an occurrence skipped for everyone is skipped for the user too,
    before the user's own verdict (their dates and holidays, opt-out, quiet hours).
    """
    skipped = rules.occurrence_skip(schedule, fire.zone, fire.nominal)
    if user is None:
        return Fire(fire.schedule, fire.zone, fire.nominal, fire.send_at, skipped)
    verdict = rules.judge(schedule, fire.zone, fire.nominal,
                          fire.nominal + expires_after)(user)
    if skipped is None and verdict.status == "suppressed":
        skipped = verdict.reason
    expired = verdict.reason if verdict.status == "expired" else None
    return Fire(fire.schedule, verdict.zone, fire.nominal, verdict.send_at, skipped, expired,
                held=verdict.send_at != fire.send_at)


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
