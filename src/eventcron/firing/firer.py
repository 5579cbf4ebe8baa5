"""Firing: one occurrence of a job becomes one ledger row per user, in batches.

The fire is recorded as ``firing`` before the first row and ``fired`` after the last, so
a crash in between is noticed at the next start and the fire completed; the unique key
makes the repeated rows no-ops.

The campaign rules (:mod:`eventcron.campaign`) decide each row's first send time and
whether it is born final (opted out, skipped for that user, quiet hours past its expiry);
an occurrence they skip for everyone is recorded ``skipped`` with the reason, no rows.
"""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from eventcron.campaign import CapWindow, Judge, Rules
from eventcron.clock import Clock, ms, rfc3339, to_ms
from eventcron.config import Delivery
from eventcron.config.audience import Member
from eventcron.firing.plan import Job
from eventcron.ledger import CapSlot, LedgerThread, NewRow
from eventcron.metrics import Metrics
from eventcron.text import count
from eventcron.timing import jitter_delay

log = logging.getLogger("eventcron.firing")

FIRE_BATCH: Final = 5_000  # users rendered and inserted per ledger transaction
PROGRESS_EVERY: Final = 5.0  # seconds between progress lines of a large fire


def render_rows(job: Job, nominal: datetime, members: Iterator[Member], limit: int,
                expires_after: float, *, judge: Judge | None = None) -> list[NewRow]:
    """Build up to ``limit`` ledger rows for the next members of an occurrence.

    ``judge`` (the campaign rules' verdicts for this occurrence, see :meth:`Firer.judge`)
    sets each row's zone, first send time, state and cap window; without it every row
    is pending at the nominal time plus the user's jitter.
    """
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
    if judge is not None:
        return _judged_rows(job, nominal_ms, members, limit, expires_at=expires_at,
                            render=render, judge=judge)
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


def _judged_rows(job: Job, nominal_ms: int, members: Iterator[Member], limit: int, *,
                 expires_at: int, render: Callable[[Member], str],
                 judge: Judge) -> list[NewRow]:
    """Build rows as the campaign rules' verdicts say (the slow path of :func:`render_rows`)."""
    sid, event_type = job.schedule.id, job.schedule.event_type
    slots: dict[CapWindow, CapSlot] = {}  # most rows of a fire share a handful of windows
    rows: list[NewRow] = []
    last_at, last_ms = None, 0  # without jitter, a zone's users share one send time
    for member in members:
        verdict = judge(member)
        slot = None
        if verdict.cap is not None:
            slot = slots.get(verdict.cap)
            if slot is None:
                slot = slots[verdict.cap] = cap_slot(verdict.cap)
        if verdict.send_at is not last_at:
            last_at, last_ms = verdict.send_at, to_ms(verdict.send_at)
        # A row born final keeps its data: `replay --include-suppressed` sends it as is.
        rows.append(NewRow(sid, member.id, event_type, nominal_ms, render(member), last_ms,
                           expires_at, verdict.zone, verdict.status, verdict.reason, slot))
        if len(rows) >= limit:
            break
    return rows


def cap_slot(window: CapWindow) -> CapSlot:
    """Return the ledger's form of a cap window (times in ms)."""
    # The slots are keyed by the unit ("day" of "1/day", as Cap.describe writes it), not
    # the count: a reload that lowers the count still sees what was taken in the window.
    unit = window.cap.rpartition("/")[2]
    return CapSlot(unit, window.limit, to_ms(window.start), to_ms(window.end), window.label)


class Ruled(NamedTuple):
    """Rows of a fire the campaign rules made final at once.

    By their verdicts (opt-outs, per-user skips, quiet hours past the expiry), or by the
    frequency cap as the ledger inserted them.
    """

    suppressed: int = 0
    expired: int = 0

    @classmethod
    def of(cls, rows: list[NewRow], capped: int = 0) -> Ruled:
        """Count the rows born suppressed or expired; ``capped`` more the cap suppressed."""
        suppressed, expired = capped, 0
        for row in rows:
            if row.status == "suppressed":
                suppressed += 1
            elif row.status == "expired":
                expired += 1
        return cls(suppressed, expired)

    def describe(self) -> str:
        """Say it for a "fired" line: ``; 3 suppressed and 1 expired by the campaign rules``."""
        parts = [f"{self.suppressed:,} suppressed" if self.suppressed else "",
                 f"{self.expired:,} expired" if self.expired else ""]
        said = " and ".join(p for p in parts if p)
        return f"; {said} by the campaign rules" if said else ""


class Enqueued(NamedTuple):
    """What a fire did: users it covered, and rows that were new (the rest were present)."""

    users: int
    added: int


Watermark = Callable[[Job, datetime], int]


def _nominal(_job: Job, nominal: datetime) -> int:
    return to_ms(nominal)


class Firer:
    """Turns fires into ledger rows and wakes the dispatcher.

    ``rules``: the campaign rules of the plan (None: none apply, as for a plan without).
    """

    def __init__(self, db: LedgerThread, clock: Clock, policy: Delivery,
                 on_enqueued: Callable[[], None], *, watermark: Watermark = _nominal,
                 metrics: Metrics | None = None, instance: str | None = None,
                 rules: Rules | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.db = db
        # Who fires: written to each fire record it opens or finishes (``history`` shows it).
        self.instance = instance
        self.clock = clock
        self.policy = policy
        self.rules = rules
        self.on_enqueued = on_enqueued
        # The job watermark a recorded fire may advance to (firing holds it back while an
        # earlier occurrence of the job is still unrecorded).
        self.watermark = watermark

    def configure(self, policy: Delivery, rules: Rules | None = None) -> None:
        """Use a reloaded delivery policy and campaign rules from the next fire on."""
        self.policy = policy
        self.rules = rules

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    def judge(self, job: Job, nominal: datetime) -> Judge | None:
        """Return the campaign rules' verdicts for an occurrence's users; None: no rules.

        Asked once per occurrence: work that depends on the zone only is done once.
        """
        rules = self.rules
        if rules is None or not rules.active:
            return None  # the fast path: no call per user
        expires_at = nominal + timedelta(seconds=self.policy.expires_after)
        return rules.judge(job.schedule, job.zone, nominal, expires_at)

    def skip_reason(self, job: Job, nominal: datetime) -> str | None:
        """Return why the rules skip an occurrence for everyone (a holiday, a date), or None."""
        rules = self.rules
        if rules is None or not rules.active:
            return None
        return rules.occurrence_skip(job.schedule, job.zone, nominal)

    async def fire(self, job: Job, nominal: datetime, why: str = "", *,
                   by_hand: bool = False) -> Enqueued:
        """Enqueue one occurrence for every member of the job; return users and rows added.

        ``by_hand`` (``eventcron fire``) fires even an occurrence that was skipped or fired
        (only missing rows are added) and leaves the job's watermark alone. An occurrence
        the campaign rules skip for everyone is recorded skipped instead, unless by hand
        (each user's row then says why it is not sent).
        """
        ledger = self.db.ledger
        sid, zone = job.schedule.id, job.zone
        nominal_ms = to_ms(nominal)
        if not by_hand:
            reason = self.skip_reason(job, nominal)
            if reason is not None:
                await self.skip(job, nominal, reason)
                return Enqueued(0, 0)
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
        judge = self.judge(job, nominal)
        total = added = suppressed = expired = 0
        began = last_report = time.monotonic()
        while True:
            n, a, ruled = await self.db.call(self._enqueue_batch, job, nominal, members,
                                             expires_after, judge)
            if n == 0:
                break
            total += n
            added += a
            suppressed += ruled.suppressed
            expired += ruled.expired
            self.on_enqueued()
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                log.info("firing %s at %s: %s enqueued so far (%s/s)", job.key,
                         rfc3339(nominal), count(total, "user"),
                         f"{total / (last_report - began):,.0f}")
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
        ruled = Ruled(suppressed, expired)
        self._count(ruled)
        present = total - added
        again = (f" ({present:,} {'was' if present == 1 else 'were'} already queued)"
                 if present else "")
        log.info("fired %s at %s%s: %s enqueued%s%s", job.key, rfc3339(nominal),
                 f" ({why})" if why else "", count(added, "user"), again, ruled.describe(),
                 extra=_fired(job, nominal, added, ruled))
        return Enqueued(total, added)

    async def fire_together(self, fires: list[tuple[Job, datetime]]) -> int:
        """Fire many small occurrences in one ledger transaction; return rows added.

        For inline audiences only (they are in memory): a burst of schedules due at the
        same moment becomes one write instead of four per schedule. Occurrences the
        campaign rules skip for everyone are recorded skipped, one by one.
        """
        skipped = [(job, nominal, reason) for job, nominal in fires
                   if (reason := self.skip_reason(job, nominal)) is not None]
        if skipped:
            for job, nominal, reason in skipped:
                await self.skip(job, nominal, reason)
            gone = {(job.key, nominal) for job, nominal, _ in skipped}
            fires = [(job, nominal) for job, nominal in fires if (job.key, nominal) not in gone]
            if not fires:
                return 0
        expires_after = self.policy.expires_after
        now_ms = self._now_ms()
        rendered = [render_rows(job, nominal, iter(job.schedule.members(job.zone)),
                                job.schedule.audience.size, expires_after,
                                judge=self.judge(job, nominal))
                    for job, nominal in fires]
        batch = [(job.key, job.schedule.id, job.zone, job.schedule.fingerprint(),
                  to_ms(nominal), rows, self.watermark(job, nominal))
                 for (job, nominal), rows in zip(fires, rendered, strict=True)]
        added = await self.db.call(self.db.ledger.fire_together, batch, now_ms,
                                   instance=self.instance)
        self.on_enqueued()
        total = 0
        for (job, nominal), done, rows in zip(fires, added, rendered, strict=True):
            if done is None:
                log.debug("%s at %s was already fired", job.key, rfc3339(nominal))
                continue
            n = done.rows
            total += n
            ruled = Ruled.of(rows, done.capped) if self.rules is not None else Ruled()
            self._count(ruled)
            self.metrics.fires.inc()
            self.metrics.last_fire(job.schedule.id, nominal.timestamp())
            log.info("fired %s at %s: %s enqueued%s", job.key, rfc3339(nominal),
                     count(n, "user"), ruled.describe(), extra=_fired(job, nominal, n, ruled))
        self.metrics.enqueued.inc(total)
        return total

    async def skip(self, job: Job, nominal: datetime, reason: str) -> bool:
        """Record an occurrence the rules skip for everyone; return whether this recorded it.

        The job's watermark advances as a fire's would; nothing is sent. False when the
        occurrence was fired or skipped already (by this instance earlier, or another).
        """
        watermark = self.watermark(job, nominal)
        recorded = await self.db.call(self._record_skip, job, to_ms(nominal), reason,
                                      watermark)
        if recorded:
            occurrence = rfc3339(nominal)
            log.info("skipped %s at %s: %s", job.key, occurrence, reason,
                     extra={"schedule": job.schedule.id, "occurrence": occurrence,
                            "timezone": job.zone, "reason": reason})
        else:
            log.debug("%s at %s was already fired or skipped", job.key, rfc3339(nominal))
        return recorded

    def _record_skip(self, job: Job, nominal_ms: int, reason: str, watermark: int) -> bool:
        # Runs on the ledger thread: one transaction (Occurrences.skip_fire).
        return self.db.ledger.skip_fire(
            job.key, job.schedule.id, job.zone, nominal_ms, fingerprint=job.schedule.fingerprint(),
            reason=reason, watermark=watermark, now=self._now_ms(), instance=self.instance)

    def _count(self, ruled: Ruled) -> None:
        # Rows the rules made final at fire time are outcomes too: an opt-out shows in
        # eventcron_deliveries_total{outcome="suppressed"}, a quiet window that outlasts
        # the expiry in "expired" (which the final-failure alert watches).
        if ruled.suppressed:
            self.metrics.outcomes["suppressed"] += ruled.suppressed
        if ruled.expired:
            self.metrics.outcomes["expired"] += ruled.expired

    def _enqueue_batch(self, job: Job, nominal: datetime, members: Iterator[Member],
                       expires_after: float, judge: Judge | None) -> tuple[int, int, Ruled]:
        # Runs on the ledger thread: reading the audience and rendering stay off the loop.
        rows = render_rows(job, nominal, members, FIRE_BATCH, expires_after, judge=judge)
        if not rows:
            return 0, 0, Ruled()
        added = self.db.ledger.enqueue_counted(rows, self._now_ms())
        ruled = Ruled.of(rows, added.capped) if judge is not None else Ruled()
        return len(rows), added.rows, ruled


def _fired(job: Job, nominal: datetime, rows: int,
           ruled: Ruled | None = None) -> dict[str, object]:
    """Return the structured fields of a "fired" log line (``--log-format json``).

    ``suppressed`` and ``expired`` (rows the campaign rules made final at once) are there
    only when some were.
    """
    fields: dict[str, object] = {"schedule": job.schedule.id, "occurrence": rfc3339(nominal),
                                 "timezone": job.zone, "rows": rows}
    if ruled is not None and (ruled.suppressed or ruled.expired):
        fields |= {"suppressed": ruled.suppressed, "expired": ruled.expired}
    return fields
