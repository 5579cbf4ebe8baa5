"""Occurrences that were not fired on time: after downtime, a clock jump, a crash or a load.

Acts on the decisions of :mod:`eventcron.firing.catchup` (which occurrences to fire, which
to skip and why); every skip is recorded in the ledger with its reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shlex
import zoneinfo
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

from eventcron.clock import Clock, from_ms, rfc3339, to_ms
from eventcron.config import Config, Delivery
from eventcron.config.audience import AudienceError
from eventcron.firing import catchup
from eventcron.firing.firer import Firer
from eventcron.firing.plan import Job
from eventcron.ledger import PASSED_BEFORE_LOAD, TRANSIENT, LedgerThread, display_url
from eventcron.problems import first_line

log = logging.getLogger("eventcron")

RETRY_MAX: Final = 60.0  # seconds between tries of a step the ledger refuses
RETRIED_FIRE: Final = (*TRANSIENT, AudienceError)  # a fire also waits for its audience file
SKIP_LINES: Final = 10  # skips logged one by one per job and reason; older ones are counted


async def retrying(what: str, step: Callable[[], Awaitable[object]], *,
                   errors: tuple[type[BaseException], ...] = TRANSIENT) -> None:
    """Run ``step`` until it succeeds, backing off up to :data:`RETRY_MAX` between tries.

    Only for steps that are safe to repeat: every write in them is keyed, so a repeat
    adds nothing that is there already.
    """
    attempt = 0
    while True:
        try:
            await step()
            return
        except errors as e:
            attempt += 1
            delay = min(RETRY_MAX, 2.0 ** attempt)
            log.error("cannot %s (%s); trying again in %.0fs", what, first_line(e), delay)
            await asyncio.sleep(delay)


class Recovery:
    """Fires or skips, with reasons, the occurrences the clock did not hand over in time."""

    def __init__(self, db: LedgerThread, clock: Clock, firer: Firer, *,
                 instance: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.firer = firer
        self.instance = instance  # who skips: written to each skip it records
        self.fires = 0  # occurrences fired by catch-up

    async def finish_interrupted(self, jobs: dict[str, Job]) -> None:
        """Complete the fires a crash cut short (their rows are keyed: none is added twice)."""
        for record in await self.db.call(self.db.ledger.unfinished_fires):
            job = jobs.get(f"{record.schedule_id}@{record.zone}")
            nominal = from_ms(record.scheduled_for)
            if job is None:
                # Its schedule no longer fires in that zone (its users moved, or it is gone).
                await self.db.call(self.db.ledger.abandon_fires, [record.schedule_id],
                                   "no longer part of the plan", to_ms(self.clock.now()),
                                   record.zone, record.scheduled_for, instance=self.instance)
                continue
            log.info("finishing %s at %s, interrupted before every user was enqueued",
                     job.key, rfc3339(nominal))
            await self.firer.fire(job, nominal, "finishing an interrupted fire")

    async def catch_up(self, cfg: Config, jobs: dict[str, Job], now: datetime) -> None:
        """Apply the catch-up rules to each job's occurrences missed while stopped."""
        ledger = self.db.ledger
        states = await self.db.call(ledger.job_states)
        policy = cfg.delivery
        now_ms = to_ms(now)
        for key, job in jobs.items():
            fingerprint = job.schedule.fingerprint()
            state = states.get(key)
            if state is None or state[0] != fingerprint:
                # A new or edited schedule starts from now: nothing fires by surprise.
                await self.db.call(ledger.set_job_state, key, job.schedule.id, fingerprint,
                                   now_ms, now_ms, reset=True)
                await self.skip_passed(cfg, job, now)
                continue
            watermark = from_ms(state[1])
            occurrences, capped = await asyncio.to_thread(catchup.missed, job.timing,
                                                          watermark, now)
            if occurrences:
                # Later occurrences may be recorded already (the watermark was held back by
                # an earlier one the ledger refused): only the others were missed.
                done = await self.db.call(ledger.recorded_fires, job.schedule.id, job.zone,
                                          state[1], now_ms)
                occurrences = [t for t in occurrences if to_ms(t) not in done]
            if not occurrences:
                continue
            decision = catchup.decide(occurrences, now, policy.catch_up, policy.catch_up_mode,
                                      capped=capped)
            log.info("catch-up %s: %s", key, decision.describe())
            await self.apply(job, decision, now_ms)
            await self.db.call(ledger.set_job_state, key, job.schedule.id, fingerprint,
                               now_ms, now_ms)

    async def catch_up_late(self, policy: Delivery, job: Job,
                            occurrences: list[datetime]) -> None:
        """Apply the catch-up rules to a job's occurrences handed over long after their time."""
        now = self.clock.now()
        decision = catchup.decide(sorted(occurrences), now, policy.catch_up,
                                  policy.catch_up_mode)
        log.warning("catch-up %s: %s", job.key, decision.describe("as the clock jumped"))
        await retrying(f"catch up {job.key}",
                       functools.partial(self.apply, job, decision, to_ms(now)),
                       errors=RETRIED_FIRE)

    async def skip_passed(self, cfg: Config, job: Job, now: datetime) -> None:
        """Record and announce the occurrence a new or retimed job's load passed over."""
        t = await asyncio.to_thread(catchup.passed_before_load, job.timing, now,
                                    cfg.delivery.catch_up)
        if t is None:
            return
        if not await self.db.call(self.db.ledger.skip_passed, job.schedule.id, job.zone,
                                  to_ms(t), to_ms(now), instance=self.instance):
            return  # already fired or recorded, by this instance earlier or another one
        local = t.astimezone(zoneinfo.ZoneInfo(job.zone))
        # The command names the file and the ledger outright: an operator's shell has neither
        # the service's $STATE_DIRECTORY nor its environment file.
        command = shlex.join(["eventcron", "--config", str(cfg.path.absolute()),
                              "--database", display_url(self.db.ledger.url), "fire",
                              job.schedule.id, "--occurrence", rfc3339(t)])
        log.warning("schedule %s: its occurrence at %s (%s %s) passed before the schedule"
                    " was loaded and is skipped; to send it anyway: %s", job.schedule.id,
                    rfc3339(t), local.isoformat(timespec="seconds"), job.zone, command,
                    extra={"schedule": job.schedule.id, "occurrence": rfc3339(t),
                           "reason": PASSED_BEFORE_LOAD})

    async def apply(self, job: Job, decision: catchup.CatchUp, now_ms: int) -> None:
        """Record a decision's skips, with their reasons, and fire the rest."""
        by_reason: dict[str, list[int]] = {}
        for t, reason in decision.skip:
            by_reason.setdefault(reason, []).append(to_ms(t))
        for reason, times in by_reason.items():
            await self.db.call(self.db.ledger.record_skipped, job.schedule.id, job.zone, times,
                               reason, now_ms, instance=self.instance)
            _log_skips(job, times, reason)
        for t in decision.fire:
            await self.firer.fire(job, t, "catch-up")
            self.fires += 1


def _log_skips(job: Job, times: list[int], reason: str) -> None:
    """Log recorded skips with their fields, for log shippers: the latest few one by one.

    A day of downtime can skip thousands of occurrences of one job: past
    :data:`SKIP_LINES` the older ones are one line saying how many (``eventcron history``
    lists each).
    """
    times = sorted(times)
    older, latest = times[:-SKIP_LINES], times[-SKIP_LINES:]
    if older:
        log.info("skipped %s older occurrences of %s, %s to %s: %s", f"{len(older):,}",
                 job.key, rfc3339(from_ms(older[0])), rfc3339(from_ms(older[-1])), reason,
                 extra={"schedule": job.schedule.id, "occurrence": rfc3339(from_ms(older[-1])),
                        "reason": reason, "skipped": len(older)})
    for t in latest:
        occurrence = rfc3339(from_ms(t))
        log.info("skipped %s at %s: %s", job.key, occurrence, reason,
                 extra={"schedule": job.schedule.id, "occurrence": occurrence,
                        "reason": reason})
