"""What operators ask of the ledger, and the instance heartbeats they look at.

The part of :class:`Ledger` behind ``status``, ``deliveries``, ``replay``, metrics and
health: counts, rows, endpoint health, replay and cancellation of rows, and each
instance's heartbeat row. It reads and writes ``deliveries`` and ``instances``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, select, update

from eventcron.ledger.base import LedgerBase
from eventcron.ledger.records import EndpointHealth, Filters, Instance, Row
from eventcron.ledger.schema import deliveries, instances
from eventcron.states import QUIET_HOLD, REPLAYABLE, SEND_SCHEDULE, STATUSES


class Operators(LedgerBase):
    """Operator queries and instance heartbeats."""

    def counts(self, schedule_id: str | None = None) -> dict[str, int]:
        """Return row counts by status (every status present, zero when none)."""
        stmt = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        if schedule_id is not None:
            stmt = stmt.where(deliveries.c.schedule_id == schedule_id)
        with self._tx(write=False) as conn:
            found = {r[0]: int(r[1]) for r in conn.execute(stmt).all()}
        return {s: found.get(s, 0) for s in STATUSES}

    def counts_by_schedule(self) -> dict[str, dict[str, int]]:
        """Return ``schedule -> status -> count``."""
        stmt = (select(deliveries.c.schedule_id, deliveries.c.status, func.count())
                .group_by(deliveries.c.schedule_id, deliveries.c.status))
        out: dict[str, dict[str, int]] = {}
        with self._tx(write=False) as conn:
            for schedule_id, status, n in conn.execute(stmt).all():
                out.setdefault(schedule_id, dict.fromkeys(STATUSES, 0))[status] = int(n)
        return out

    def pending_counts(self, schedule_ids: Iterable[str]) -> dict[str, int]:
        """Return the pending rows of each of these schedules (0 when none)."""
        ids = list(schedule_ids)
        stmt = (select(deliveries.c.schedule_id, func.count())
                .where(deliveries.c.status == "pending", deliveries.c.schedule_id.in_(ids))
                .group_by(deliveries.c.schedule_id))
        with self._tx(write=False) as conn:
            found = {sid: int(n) for sid, n in conn.execute(stmt).all()}
        return {sid: found.get(sid, 0) for sid in ids}

    def health(self) -> EndpointHealth:
        """Return the latest delivery time and the latest error the endpoint caused."""
        with self._tx(write=False) as conn:
            delivered = conn.execute(select(func.max(deliveries.c.delivered_at))).scalar()
            error = conn.execute(
                select(deliveries.c.last_error, deliveries.c.updated_at)
                .where(deliveries.c.status.in_(("pending", "failed", "expired")),
                       deliveries.c.last_error.is_not(None),
                       # The endpoint's errors only: not a campaign rule's reason (a row
                       # expired by quiet hours before any attempt, or held by them).
                       deliveries.c.attempts > 0,
                       deliveries.c.last_error.not_like(f"{QUIET_HOLD}%"))
                .order_by(deliveries.c.updated_at.desc()).limit(1)).first()
        return EndpointHealth(int(delivered) if delivered is not None else None,
                              error.last_error if error else None,
                              int(error.updated_at) if error else None)

    @staticmethod
    def _where(filters: Filters) -> Any:
        clauses: list[Any] = []
        if filters.status:
            clauses.append(deliveries.c.status.in_(filters.status))
        if filters.schedule:
            clauses.append(deliveries.c.schedule_id.in_(filters.schedule))
        if filters.user:
            clauses.append(deliveries.c.app_user_id.in_(filters.user))
        if filters.since is not None:
            clauses.append(deliveries.c.scheduled_for >= filters.since)
        return and_(True, *clauses)

    def rows(self, filters: Filters, limit: int | None = None) -> list[Row]:
        """Return rows matching ``filters``, newest occurrence first."""
        stmt = (select(deliveries.c.event_id, deliveries.c.schedule_id,
                       deliveries.c.app_user_id, deliveries.c.event_type,
                       deliveries.c.scheduled_for, deliveries.c.status, deliveries.c.attempts,
                       deliveries.c.next_attempt_at, deliveries.c.last_status_code,
                       deliveries.c.last_error, deliveries.c.delivered_at, deliveries.c.data)
                .where(self._where(filters))
                .order_by(deliveries.c.scheduled_for.desc(), deliveries.c.id.desc()))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._tx(write=False) as conn:
            return [Row(**r._mapping) for r in conn.execute(stmt).all()]

    def replay(self, filters: Filters, now: int, expires_after_ms: int, *,
               dry_run: bool = False, include_suppressed: bool = False) -> int:
        """Put failed or expired rows matching ``filters`` back to pending; return how many.

        Attempts restart at zero and the expiry restarts from now, or the rows would
        expire again at once. Suppressed rows only with ``include_suppressed``: the
        campaign rules kept them from being sent, and a replay must not undo that unasked.
        Rows of ``eventcron send`` (schedule ``-``) never: a send is one-shot, and the
        dispatcher would cancel such a row, its schedule being in no plan
        (:meth:`sends_not_replayed` counts those the filters match).
        """
        where = and_(self._replayable(filters, include_suppressed),
                     deliveries.c.schedule_id != SEND_SCHEDULE)
        with self._tx(write=not dry_run) as conn:
            if dry_run:
                return int(conn.execute(select(func.count()).select_from(deliveries)
                                        .where(where)).scalar_one())
            result = conn.execute(update(deliveries).where(where).values(
                status="pending", attempts=0, next_attempt_at=now,
                expires_at=now + expires_after_ms, claimed_by=None, claim_until=None,
                last_error=None, updated_at=now))
        return int(result.rowcount or 0)

    def sends_not_replayed(self, filters: Filters, *, include_suppressed: bool = False) -> int:
        """Count the rows of ``eventcron send`` that :meth:`replay` leaves for these filters."""
        where = and_(self._replayable(filters, include_suppressed),
                     deliveries.c.schedule_id == SEND_SCHEDULE)
        with self._tx(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(deliveries)
                                    .where(where)).scalar_one())

    def _replayable(self, filters: Filters, include_suppressed: bool) -> Any:
        """Return the condition of the rows a replay with ``filters`` may take, sends too."""
        allowed = (*REPLAYABLE, "suppressed") if include_suppressed else REPLAYABLE
        statuses = tuple(s for s in (filters.status or allowed) if s in allowed)
        return and_(self._where(Filters(statuses, filters.schedule, filters.user,
                                        filters.since)),
                    deliveries.c.status.in_(statuses))

    def cancel_schedules(self, schedule_ids: Iterable[str], reason: str, now: int) -> int:
        """Cancel pending rows of removed or disabled schedules; return how many."""
        ids = list(schedule_ids)
        if not ids:
            return 0
        with self._tx() as conn:
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.schedule_id.in_(ids), deliveries.c.status == "pending")
                .values(status="cancelled", last_error=reason, claimed_by=None,
                        claim_until=None, updated_at=now))
        return int(result.rowcount or 0)

    # --- instances ----------------------------------------------------------------------

    def heartbeat(self, instance: Instance) -> None:
        """Write an instance's heartbeat row (inserted on its first beat)."""
        values = dataclasses.asdict(instance)
        values["paused"] = int(instance.paused)
        changing = {k: values[k] for k in ("last_seen", "stopped_at", "paused", "plan_sha256")}
        with self._tx() as conn:
            conn.execute(self._dialect.upsert(instances, values, instances.c.name, changing))

    def instances(self) -> list[Instance]:
        """Return every instance that ever ran, the most recently seen first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(instances).order_by(
                instances.c.last_seen.desc())).all()
        return [Instance(r.name, r.host, r.pid, r.version, int(r.started_at),
                         int(r.last_seen), None if r.stopped_at is None else int(r.stopped_at),
                         bool(r.paused), r.plan_sha256) for r in rows]
