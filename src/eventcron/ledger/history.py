"""What happened to each occurrence: its fire record, who wrote it, and what became of its rows.

The part of :class:`Ledger` behind ``eventcron history`` and the ``last_occurrence`` of
``status``. It only reads: ``fires`` for the occurrences (fired, skipped, or being fired),
``deliveries`` for their rows, matched by schedule and nominal time. Each answer is one
statement (so one snapshot, on PostgreSQL too), whatever the number of occurrences: the
rows are counted by state in a single grouped join, looked up through the unique key's
index, whose first columns are exactly (schedule_id, scheduled_for).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, func, select, tuple_

from eventcron.ledger.base import LedgerBase
from eventcron.ledger.records import HistoryEntry
from eventcron.ledger.schema import deliveries, fires
from eventcron.states import STATUSES

_NEWEST_FIRST = (fires.c.scheduled_for.desc(), fires.c.schedule_id, fires.c.zone)


class History(LedgerBase):
    """Occurrences newest first, with their rows counted by state."""

    def history(self, schedule_ids: Sequence[str] = (), since: int | None = None,
                limit: int | None = None) -> list[HistoryEntry]:
        """Return occurrences newest first: fired, skipped, and those being fired.

        ``schedule_ids`` keeps only those schedules; ``since`` (ms) only occurrences whose
        nominal time is at or after it; ``limit`` the newest so many (None: all).
        """
        where: list[Any] = []
        if schedule_ids:
            where.append(fires.c.schedule_id.in_(list(schedule_ids)))
        if since is not None:
            where.append(fires.c.scheduled_for >= since)
        listed = select(*fires.c).where(and_(True, *where)).order_by(*_NEWEST_FIRST)
        if limit is not None:
            listed = listed.limit(limit)
        return self._entries(listed)

    def latest_occurrences(self) -> dict[str, HistoryEntry]:
        """Return each schedule's latest occurrence (fired, skipped or being fired).

        Where zones of a ``timezone: user`` schedule share its latest instant, the first
        zone by name stands for it.
        """
        latest = (select(fires.c.schedule_id, func.max(fires.c.scheduled_for))
                  .group_by(fires.c.schedule_id))
        listed = select(*fires.c).where(
            tuple_(fires.c.schedule_id, fires.c.scheduled_for).in_(latest))
        out: dict[str, HistoryEntry] = {}
        for entry in self._entries(listed.order_by(*_NEWEST_FIRST)):
            out.setdefault(entry.schedule_id, entry)
        return out

    def _entries(self, listed: Select[Any]) -> list[HistoryEntry]:
        # The fire records, each joined to its rows' counts by state: one output row per
        # (occurrence, state present), none of them when it has no rows (a LEFT JOIN).
        chosen = listed.cte("chosen")
        keys = select(chosen.c.schedule_id, chosen.c.scheduled_for).distinct().subquery("keys")
        d = deliveries.c
        tallies = (
            select(d.schedule_id, d.scheduled_for, d.status, func.count().label("n"),
                   func.min(d.delivered_at).label("first"),
                   func.max(d.delivered_at).label("last"))
            .select_from(keys.join(deliveries, and_(d.schedule_id == keys.c.schedule_id,
                                                    d.scheduled_for == keys.c.scheduled_for)))
            .group_by(d.schedule_id, d.scheduled_for, d.status)
            .subquery("tallies"))
        t = tallies.c
        stmt = (
            select(chosen, t.status.label("state"), t.n, t.first, t.last)
            .select_from(chosen.outerjoin(tallies, and_(
                t.schedule_id == chosen.c.schedule_id,
                t.scheduled_for == chosen.c.scheduled_for)))
            .order_by(chosen.c.scheduled_for.desc(), chosen.c.schedule_id, chosen.c.zone))
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).all()
        return _gather(rows)


def _gather(rows: Sequence[Any]) -> list[HistoryEntry]:
    """Fold the joined rows (one per occurrence and state) into one entry per occurrence."""
    out: list[HistoryEntry] = []
    key: tuple[str, str, int] | None = None
    counts: dict[str, int] = {}
    first: int | None = None
    last: int | None = None
    head: Any = None

    def close() -> None:
        out.append(HistoryEntry(
            head.schedule_id, head.zone, int(head.scheduled_for), head.status, head.reason,
            head.instance, int(head.users), counts, first, last))

    for r in rows:
        this = (r.schedule_id, r.zone, int(r.scheduled_for))
        if this != key:
            if head is not None:
                close()
            key, head, counts, first, last = this, r, dict.fromkeys(STATUSES, 0), None, None
        if r.state is None:
            continue  # no rows at all
        counts[r.state] = counts.get(r.state, 0) + int(r.n)
        if r.first is not None:  # only delivered rows have a delivery time: one group
            first, last = int(r.first), int(r.last)
    if head is not None:
        close()
    return out
