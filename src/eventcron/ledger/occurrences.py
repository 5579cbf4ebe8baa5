"""Which occurrences were fired: fire records (``fires``) and job watermarks (``job_state``).

The part of :class:`Ledger` the firing side uses to decide, without races across
instances, whether an occurrence is fired, and to record that it was. It reads
``deliveries`` only to count or list; rows are enqueued through the base.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import Connection, delete, func, select, update

from eventcron.ledger.base import RECORD_CHUNK, LedgerBase
from eventcron.ledger.records import PASSED_BEFORE_LOAD, Added, FireRecord, NewRow
from eventcron.ledger.schema import deliveries, fires, job_state

# Whether a fire is the caller's to finish ("own"), joins one in progress or done ("shared",
# rows only), or must not happen ("none").
FireClaim = Literal["own", "shared", "none"]


class Occurrences(LedgerBase):
    """Fire records and job watermarks.

    Each method that creates or changes a fire record takes ``instance``: who does it (a
    claim owner name, or ``eventcron fire``'s identity), written to the record so
    ``eventcron history`` can say who fired or skipped each occurrence.
    """

    def begin_fire(self, schedule_id: str, zone: str, scheduled_for: int, now: int, *,
                   instance: str | None = None) -> bool:
        """Record that an occurrence is being fired; False if it already was, or was skipped.

        True also for a fire in progress (one a crash interrupted, or another instance's):
        the unique key makes the second enqueue add only what is missing.
        """
        with self._tx() as conn:
            return self._begin_fire_in(conn, schedule_id, zone, scheduled_for, now,
                                       instance=instance) != "none"

    def begin_fire_by_hand(self, schedule_id: str, zone: str, scheduled_for: int,
                           now: int, *, instance: str | None = None) -> bool:
        """Open a fire for ``eventcron fire``; return whether the caller must finish it.

        A skipped or new occurrence becomes the caller's to finish. One that is being fired
        (a running instance, or a crash's leftover) or was fired is joined: its rows are
        enqueued through the unique key, but its record is left to whoever owns it, so a
        crash of that owner is still noticed and completed at the next start.
        """
        with self._tx() as conn:
            claim = self._begin_fire_in(conn, schedule_id, zone, scheduled_for, now,
                                        by_hand=True, instance=instance)
        return claim == "own"

    def _begin_fire_in(self, conn: Connection, schedule_id: str, zone: str, scheduled_for: int,
                       now: int, *, by_hand: bool = False,
                       instance: str | None = None) -> FireClaim:
        inserted = conn.execute(self._dialect.insert(fires).values(
            schedule_id=schedule_id, zone=zone, scheduled_for=scheduled_for,
            status="firing", users=0, updated_at=now, instance=instance,
        ).returning(fires.c.status)).first()
        if inserted is not None:
            return "own"
        where = (fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                 fires.c.scheduled_for == scheduled_for)
        return self._take_fire(conn, where, now, by_hand=by_hand, instance=instance)

    @staticmethod
    def _take_fire(conn: Connection, where: tuple[Any, ...], now: int, *,
                   by_hand: bool = False, instance: str | None = None) -> FireClaim:
        # The fire record exists: may this caller fire, and does the record become its own?
        status, reason = conn.execute(select(fires.c.status, fires.c.reason).where(
            *where)).one()
        # A skip for "passed before the schedule was loaded" is one instance's view: another
        # that had the schedule loaded in time fires the occurrence after all.
        if status == "skipped" and (by_hand or reason == PASSED_BEFORE_LOAD):
            conn.execute(update(fires).where(*where, fires.c.status == "skipped").values(
                status="firing", reason=None, updated_at=now, instance=instance))
            return "own"
        if status == "firing" or (by_hand and status == "fired"):
            return "shared"
        return "none"

    def skip_passed(self, schedule_id: str, zone: str, scheduled_for: int, now: int, *,
                    instance: str | None = None) -> bool:
        """Record an occurrence as skipped because it passed before its schedule was loaded.

        Returns False when the occurrence is already recorded (fired, firing or skipped).
        """
        with self._tx() as conn:
            # RETURNING, not rowcount: psycopg does not report a count for ON CONFLICT.
            inserted = conn.execute(self._dialect.insert(fires).values(
                schedule_id=schedule_id, zone=zone, scheduled_for=scheduled_for,
                status="skipped", reason=PASSED_BEFORE_LOAD, users=0, updated_at=now,
                instance=instance,
            ).returning(fires.c.scheduled_for)).first()
            return inserted is not None

    def skip_fire(self, job: str, schedule_id: str, zone: str, scheduled_for: int, *,
                  fingerprint: str, reason: str, watermark: int, now: int,
                  instance: str | None = None) -> bool:
        """Record an occurrence skipped for everyone, with ``reason``, and advance its job.

        Taken as a fire first, in the same transaction, so that of several instances only
        one that would fire it records it, and an interrupted fire (or one another instance
        saw pass before its load) is closed with this reason, never left open. False when
        the occurrence was fired or skipped already.
        """
        def skip(conn: Connection) -> bool:
            if self._begin_fire_in(conn, schedule_id, zone, scheduled_for, now,
                                   instance=instance) == "none":
                return False
            conn.execute(update(fires).where(
                fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                fires.c.scheduled_for == scheduled_for, fires.c.status == "firing",
            ).values(status="skipped", reason=reason, updated_at=now, instance=instance))
            self._advance(conn, job, schedule_id, fingerprint, watermark=watermark, now=now)
            return True

        return self._write(skip)

    def fire_together(self,
                      batch: Sequence[tuple[str, str, str, str, int, Sequence[NewRow], int]],
                      now: int, *, instance: str | None = None) -> list[Added | None]:
        """Fire several occurrences atomically: record, enqueue, mark fired, advance jobs.

        Each item is ``(job, schedule_id, zone, fingerprint, scheduled_for, rows,
        watermark)``. Returns rows added (and capped) per item, or None for one already
        fired. All or
        nothing: after a crash none of them is recorded, so catch-up fires them again.
        """
        def fire(conn: Connection) -> list[Added | None]:
            result: list[Added | None] = []
            conn.execute(self._dialect.insert(fires), [
                {"schedule_id": sid, "zone": zone, "scheduled_for": t, "status": "firing",
                 "users": 0, "updated_at": now, "instance": instance}
                for _, sid, zone, _, t, _, _ in batch])
            for job, sid, zone, fingerprint, t, rows, watermark in batch:
                where = (fires.c.schedule_id == sid, fires.c.zone == zone,
                         fires.c.scheduled_for == t)
                if self._take_fire(conn, where, now, instance=instance) == "none":
                    result.append(None)
                    continue
                added = self._enqueue_in(conn, rows, now)  # cap slots too, as enqueue
                conn.execute(update(fires).where(*where).values(
                    status="fired", users=added.rows, updated_at=now, instance=instance))
                self._advance(conn, job, sid, fingerprint, watermark=watermark, now=now)
                result.append(added)
            return result

        return self._write(fire)

    def _advance(self, conn: Connection, job: str, schedule_id: str, fingerprint: str, *,
                 watermark: int, now: int) -> None:
        # Two instances may race here; the guard keeps the watermark monotonic.
        current = conn.execute(select(job_state.c.watermark).where(
            job_state.c.job == job)).scalar()
        if current is None:
            conn.execute(self._dialect.insert(job_state).values(
                job=job, schedule_id=schedule_id, fingerprint=fingerprint,
                watermark=watermark, updated_at=now))
        elif watermark > current:
            conn.execute(update(job_state).where(
                job_state.c.job == job, job_state.c.watermark < watermark).values(
                watermark=watermark, updated_at=now))

    def finish_fire(self, schedule_id: str, zone: str, scheduled_for: int, users: int,
                    now: int, *, instance: str | None = None) -> None:
        """Mark an occurrence fired with the number of rows it enqueued."""
        with self._tx() as conn:
            conn.execute(update(fires).where(
                fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                fires.c.scheduled_for == scheduled_for).values(
                status="fired", users=fires.c.users + users, updated_at=now,
                instance=instance))

    def record_skipped(self, schedule_id: str, zone: str, times: Iterable[int], reason: str,
                       now: int, *, instance: str | None = None) -> None:
        """Record occurrences that will not be fired, with the reason."""
        values = [{"schedule_id": schedule_id, "zone": zone, "scheduled_for": t,
                   "status": "skipped", "reason": reason, "users": 0, "updated_at": now,
                   "instance": instance}
                  for t in times]
        if values:
            with self._tx() as conn:
                conn.execute(self._dialect.insert(fires), values)

    def abandon_fires(self, schedule_ids: Sequence[str], reason: str, now: int,
                      zone: str | None = None, scheduled_for: int | None = None, *,
                      instance: str | None = None) -> None:
        """Close unfinished fires that will never be completed (their schedule is gone)."""
        where = [fires.c.status == "firing", fires.c.schedule_id.in_(list(schedule_ids))]
        if zone is not None:
            where.append(fires.c.zone == zone)
        if scheduled_for is not None:
            where.append(fires.c.scheduled_for == scheduled_for)
        with self._tx() as conn:
            conn.execute(update(fires).where(*where).values(status="skipped", reason=reason,
                                                            updated_at=now, instance=instance))

    def forget_jobs(self, schedule_ids: Sequence[str]) -> None:
        """Drop the job state of schedules, so they start afresh if they come back."""
        with self._tx() as conn:
            conn.execute(delete(job_state).where(job_state.c.schedule_id.in_(list(schedule_ids))))

    def known_schedules(self) -> set[str]:
        """Return schedules with pending rows, unfinished fires or job state."""
        with self._tx(write=False) as conn:
            pending = conn.execute(select(deliveries.c.schedule_id).distinct().where(
                deliveries.c.status == "pending")).scalars().all()
            firing = conn.execute(select(fires.c.schedule_id).distinct().where(
                fires.c.status == "firing")).scalars().all()
            jobs = conn.execute(select(job_state.c.schedule_id).distinct()).scalars().all()
        return {*pending, *firing, *jobs}

    def recorded_fires(self, schedule_id: str, zone: str, after: int, until: int) -> set[int]:
        """Return occurrence times in ``(after, until]`` already fired, firing or skipped."""
        with self._tx(write=False) as conn:
            return set(conn.execute(select(fires.c.scheduled_for).where(
                fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                fires.c.scheduled_for > after, fires.c.scheduled_for <= until)).scalars())

    def unfinished_fires(self) -> list[FireRecord]:
        """Return fires begun but not finished (a crash mid-enqueue), oldest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(fires).where(fires.c.status == "firing")
                                .order_by(fires.c.scheduled_for)).all()
        return [_fire_record(r) for r in rows]

    def fires_of(self, schedule_id: str, limit: int = 100) -> list[FireRecord]:
        """Return a schedule's most recent fire records, newest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(fires).where(fires.c.schedule_id == schedule_id)
                                .order_by(fires.c.scheduled_for.desc()).limit(limit)).all()
        return [_fire_record(r) for r in rows]

    def last_fired(self) -> dict[str, int]:
        """Return each schedule's latest fired occurrence time (ms)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(fires.c.schedule_id, func.max(fires.c.scheduled_for))
                                .where(fires.c.status == "fired")
                                .group_by(fires.c.schedule_id)).all()
        return {r[0]: int(r[1]) for r in rows}

    def job_states(self) -> dict[str, tuple[str, int]]:
        """Return ``job -> (fingerprint, watermark)`` for every known job."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(job_state.c.job, job_state.c.fingerprint,
                                       job_state.c.watermark)).all()
        return {r.job: (r.fingerprint, int(r.watermark)) for r in rows}

    def set_job_state(self, job: str, schedule_id: str, fingerprint: str, watermark: int,
                      now: int, *, reset: bool = False) -> None:
        """Store a job's watermark: raised monotonically, or set outright with ``reset``."""
        with self._tx() as conn:
            if reset:
                exists = conn.execute(select(job_state.c.job).where(
                    job_state.c.job == job)).scalar() is not None
                if exists:
                    conn.execute(update(job_state).where(job_state.c.job == job).values(
                        fingerprint=fingerprint, watermark=watermark, updated_at=now))
                    return
            self._advance(conn, job, schedule_id, fingerprint, watermark=watermark, now=now)

    def count_present(self, schedule_id: str, event_type: str, scheduled_for: int,
                      app_user_ids: Sequence[str]) -> int:
        """Count which of these users already have a row for an occurrence (a dry run)."""
        found = 0
        with self._tx(write=False) as conn:
            for start in range(0, len(app_user_ids), RECORD_CHUNK):
                found += int(conn.execute(select(func.count()).select_from(deliveries).where(
                    deliveries.c.schedule_id == schedule_id,
                    deliveries.c.event_type == event_type,
                    deliveries.c.scheduled_for == scheduled_for,
                    deliveries.c.app_user_id.in_(app_user_ids[start:start + RECORD_CHUNK]),
                )).scalar_one())
        return found


def _fire_record(r: Any) -> FireRecord:
    return FireRecord(r.schedule_id, r.zone, int(r.scheduled_for), r.status, r.reason,
                      int(r.users), r.instance)
