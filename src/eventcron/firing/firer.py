"""Firing: one occurrence of a job becomes one ledger row per user, in batches.

The fire is recorded as ``firing`` before the first row and ``fired`` after the last, so
a crash in between is noticed at the next start and the fire completed; the unique key
makes the repeated rows no-ops.
"""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from eventcron.clock import Clock, ms, rfc3339, to_ms
from eventcron.config import Delivery
from eventcron.config.audience import Member
from eventcron.firing.plan import Job
from eventcron.ledger import LedgerThread, NewRow
from eventcron.metrics import Metrics
from eventcron.timing import jitter_delay

log = logging.getLogger("eventcron.firing")

FIRE_BATCH: Final = 5_000  # users rendered and inserted per ledger transaction
PROGRESS_EVERY: Final = 5.0  # seconds between progress lines of a large fire


def render_rows(job: Job, nominal: datetime, members: Iterator[Member], limit: int,
                expires_after: float) -> list[NewRow]:
    """Build up to ``limit`` ledger rows for the next members of an occurrence."""
    schedule = job.schedule
    template = schedule.data
    nominal_ms = to_ms(nominal)
    expires_at = nominal_ms + ms(expires_after)
    jitter = timedelta(seconds=schedule.jitter)
    local = nominal.astimezone(zoneinfo.ZoneInfo(job.zone))
    render = template.renderer({
        "scheduled_for": rfc3339(nominal),
        "scheduled_for_local": local.isoformat(timespec="seconds"),
        "schedule_id": schedule.id,
        "event_type": schedule.event_type,
    }, schedule.audience.columns)
    rows: list[NewRow] = []
    sid, event_type = schedule.id, schedule.event_type
    for member in members:
        delay = ms(jitter_delay(schedule.id, member.id, nominal, jitter).total_seconds()) \
            if schedule.jitter else 0
        rows.append(NewRow(sid, member.id, event_type, nominal_ms, render(member),
                           nominal_ms + delay, expires_at))
        if len(rows) >= limit:
            break
    return rows


class Enqueued(NamedTuple):
    """What a fire did: users it covered, and rows that were new (the rest were present)."""

    users: int
    added: int


Watermark = Callable[[Job, datetime], int]


def _nominal(_job: Job, nominal: datetime) -> int:
    return to_ms(nominal)


class Firer:
    """Turns fires into ledger rows and wakes the dispatcher."""

    def __init__(self, db: LedgerThread, clock: Clock, policy: Delivery,
                 on_enqueued: Callable[[], None], *, watermark: Watermark = _nominal,
                 metrics: Metrics | None = None, instance: str | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.db = db
        # Who fires: written to each fire record it opens or finishes (``history`` shows it).
        self.instance = instance
        self.clock = clock
        self.policy = policy
        self.on_enqueued = on_enqueued
        # The job watermark a recorded fire may advance to (firing holds it back while an
        # earlier occurrence of the job is still unrecorded).
        self.watermark = watermark

    def configure(self, policy: Delivery) -> None:
        """Use a reloaded delivery policy from the next fire on."""
        self.policy = policy

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    async def fire(self, job: Job, nominal: datetime, why: str = "", *,
                   by_hand: bool = False) -> Enqueued:
        """Enqueue one occurrence for every member of the job; return users and rows added.

        ``by_hand`` (``eventcron fire``) fires even an occurrence that was skipped or fired
        (only missing rows are added) and leaves the job's watermark alone.
        """
        ledger = self.db.ledger
        sid, zone = job.schedule.id, job.zone
        nominal_ms = to_ms(nominal)
        if by_hand:  # always fires; finishes the record only if it took it
            started = True
            owned = await self.db.call(ledger.begin_fire_by_hand, sid, zone, nominal_ms,
                                       self._now_ms(), instance=self.instance)
        else:
            started = owned = await self.db.call(ledger.begin_fire, sid, zone, nominal_ms,
                                                 self._now_ms(), instance=self.instance)
        if not started:
            log.debug("%s at %s was already fired", job.key, rfc3339(nominal))
            return Enqueued(0, 0)
        members = iter(job.schedule.members(zone))
        expires_after = self.policy.expires_after
        total = added = 0
        began = last_report = time.monotonic()
        while True:
            n, a = await self.db.call(self._enqueue_batch, job, nominal, members, expires_after)
            if n == 0:
                break
            total += n
            added += a
            self.on_enqueued()
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                log.info("firing %s at %s: %s users enqueued so far (%.0f/s)", job.key,
                         rfc3339(nominal), f"{total:,}", total / (last_report - began))
        now_ms = self._now_ms()
        if owned:
            await self.db.call(ledger.finish_fire, sid, zone, nominal_ms, added, now_ms,
                               instance=self.instance)
        if not by_hand:
            await self.db.call(ledger.set_job_state, job.key, sid, job.schedule.fingerprint(),
                               self.watermark(job, nominal), now_ms)
        self.metrics.fires.inc()
        self.metrics.enqueued.inc(added)
        self.metrics.last_fire(sid, nominal.timestamp())
        again = f" ({total - added:,} were already queued)" if total != added else ""
        log.info("fired %s at %s%s: %s users enqueued%s", job.key, rfc3339(nominal),
                 f" ({why})" if why else "", f"{added:,}", again,
                 extra=_fired(job, nominal, added))
        return Enqueued(total, added)

    async def fire_together(self, fires: list[tuple[Job, datetime]]) -> int:
        """Fire many small occurrences in one ledger transaction; return rows added.

        For inline audiences only (they are in memory): a burst of schedules due at the
        same moment becomes one write instead of four per schedule.
        """
        expires_after = self.policy.expires_after
        now_ms = self._now_ms()
        batch = [(job.key, job.schedule.id, job.zone, job.schedule.fingerprint(),
                  to_ms(nominal),
                  render_rows(job, nominal, iter(job.schedule.members(job.zone)),
                              job.schedule.audience.size, expires_after),
                  self.watermark(job, nominal))
                 for job, nominal in fires]
        added = await self.db.call(self.db.ledger.fire_together, batch, now_ms,
                                   instance=self.instance)
        self.on_enqueued()
        total = 0
        for (job, nominal), n in zip(fires, added, strict=True):
            if n is None:
                log.debug("%s at %s was already fired", job.key, rfc3339(nominal))
                continue
            total += n
            self.metrics.fires.inc()
            self.metrics.last_fire(job.schedule.id, nominal.timestamp())
            log.info("fired %s at %s: %s users enqueued", job.key, rfc3339(nominal), f"{n:,}",
                     extra=_fired(job, nominal, n))
        self.metrics.enqueued.inc(total)
        return total

    def _enqueue_batch(self, job: Job, nominal: datetime, members: Iterator[Member],
                       expires_after: float) -> tuple[int, int]:
        # Runs on the ledger thread: reading the audience and rendering stay off the loop.
        rows = render_rows(job, nominal, members, FIRE_BATCH, expires_after)
        if not rows:
            return 0, 0
        return len(rows), self.db.ledger.enqueue(rows, self._now_ms())


def _fired(job: Job, nominal: datetime, rows: int) -> dict[str, object]:
    """Return the structured fields of a "fired" log line (``--log-format json``)."""
    return {"schedule": job.schedule.id, "occurrence": rfc3339(nominal), "timezone": job.zone,
            "rows": rows}
