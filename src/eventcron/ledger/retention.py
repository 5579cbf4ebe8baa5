"""Pruning: old final rows, fire records, instance rows and cap slots deleted in short steps.

The part of :class:`Ledger` that keeps it from growing without end. It deletes from
``deliveries``, ``fires``, ``instances`` and ``cap_slots``, never a row whose occurrence
could still be fired (that would let it be sent again), nor a slot of a window that could
still get a row. ``thread.py`` paces the steps for the daemon.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, delete, select, tuple_

from eventcron.ledger.base import LedgerBase
from eventcron.ledger.records import PRUNE_START, PruneAt
from eventcron.ledger.schema import cap_slots, deliveries, fires, instances
from eventcron.states import FINAL_STATUSES

PRUNE_BATCH: Final = 1_000  # rows a prune step looks at (the daemon's first step)
PRUNE_STEP_SECONDS: Final = 0.02  # the daemon's prune steps grow or shrink to take this long
PRUNE_BATCHES: Final = (100, 20_000)  # the least and most rows a daemon's prune step takes


class Retention(LedgerBase):
    """Deleting what the ledger no longer needs."""

    def prune(self, before: int, refire_horizon: int, *, batch: int = PRUNE_BATCH) -> int:
        """Delete final rows last changed before ``before`` (ms); return how many.

        A deleted key could let its occurrence be enqueued and sent again, so rows are
        kept while their occurrence could still be fired: when it is newer than
        ``refire_horizon`` (now minus catch_up: catch-up fires nothing older), or when its
        fire was interrupted (a restart completes those, whatever their age). Pending rows
        are never deleted. Fire records follow the same rule. Last go the cap slots of
        windows that ended before both times: no row can count in such a window any more.

        This runs every :meth:`prune_step` in a row; the daemon runs them one ledger call
        each instead (:meth:`LedgerThread.prune`), so other calls get through in between.
        """
        total = 0
        at: PruneAt | None = PRUNE_START
        while at is not None:
            n, at = self.prune_step(before, refire_horizon, at, batch=batch)
            total += n
        return total

    def prune_step(self, before: int, refire_horizon: int, at: PruneAt = PRUNE_START, *,
                   batch: int = PRUNE_BATCH) -> tuple[int, PruneAt | None]:
        """Run one short transaction of :meth:`prune`, looking at ``batch`` rows after ``at``.

        Returns the delivery rows deleted and where the next step starts (None: done).
        Each step walks an index on from where the last one stopped, so its cost is bounded
        by ``batch`` however many rows are kept, and a whole prune visits each old row once.
        """
        with self._tx() as conn:
            if at.table == "cap_slots":
                more = self._prune_slots(conn, before, refire_horizon, batch)
                return 0, PruneAt("cap_slots", None) if more else None
            if at.table == "deliveries":
                key = tuple_(deliveries.c.updated_at, deliveries.c.id)
                scan = select(deliveries.c.updated_at, deliveries.c.id).where(
                    deliveries.c.updated_at < before)
                if at.after is not None:
                    scan = scan.where(key > tuple_(*at.after))
                scan = scan.order_by(deliveries.c.updated_at, deliveries.c.id)
                # Only the step's last key comes back to Python, not its thousands of rows.
                last = conn.execute(scan.offset(batch - 1).limit(1)).first()
                # The fire check uses ix_fires_firing: with the primary key alone it would
                # read every fire of the schedule for every row.
                unfinished = select(fires.c.schedule_id).where(
                    fires.c.schedule_id == deliveries.c.schedule_id,
                    fires.c.scheduled_for == deliveries.c.scheduled_for,
                    fires.c.status == "firing").exists()
                n = int(conn.execute(delete(deliveries).where(
                    deliveries.c.id.in_(scan.with_only_columns(deliveries.c.id).limit(batch)
                                        .scalar_subquery()),
                    deliveries.c.status.in_(FINAL_STATUSES),
                    deliveries.c.scheduled_for < refire_horizon,
                    ~unfinished)).rowcount or 0)
                if last is not None:
                    return n, PruneAt("deliveries", tuple(last))
                return n, PruneAt("fires", None)
            # Fire records have no index on their age: walk the primary key instead.
            key = tuple_(fires.c.schedule_id, fires.c.zone, fires.c.scheduled_for)
            fscan = select(fires.c.schedule_id, fires.c.zone, fires.c.scheduled_for)
            if at.after is not None:
                fscan = fscan.where(key > tuple_(*at.after))
            end = conn.execute(fscan.order_by(fires.c.schedule_id, fires.c.zone,
                                              fires.c.scheduled_for)
                               .offset(batch - 1).limit(1)).first()
            window = [key > tuple_(*at.after)] if at.after is not None else []
            if end is not None:
                window.append(key <= tuple_(*end))
            conn.execute(delete(fires).where(*window, fires.c.status != "firing",
                                             fires.c.updated_at < before,
                                             fires.c.scheduled_for < refire_horizon))
            if end is None:
                # Then the heartbeat rows of instances gone longer than the retention: a
                # handful of rows, one per process that ever started.
                conn.execute(delete(instances).where(instances.c.last_seen < before))
        return 0, PruneAt("cap_slots", None) if end is None else PruneAt("fires", tuple(end))

    @staticmethod
    def _prune_slots(conn: Connection, before: int, refire_horizon: int, batch: int) -> bool:
        """Delete ``batch`` cap slots of windows that ended before both horizons; True if more.

        A window that ended after ``refire_horizon`` could still get a row (a catch-up fire),
        which must find its slots taken. Every slot found is deleted, so each step starts
        from the oldest again, through ix_cap_slots_until.
        """
        s = cap_slots.c
        old = (select(s.app_user_id, s.cap, s.window, s.slot)
               .where(s.until < min(before, refire_horizon)).order_by(s.until).limit(batch))
        n = conn.execute(delete(cap_slots).where(
            tuple_(s.app_user_id, s.cap, s.window, s.slot).in_(old))).rowcount
        return bool(n) and n >= batch
