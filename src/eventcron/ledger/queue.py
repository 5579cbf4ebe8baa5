"""The delivery queue, the ledger's hot path: enqueue, claim, record, renew, release, expire.

The part of :class:`Ledger` the dispatcher uses thousands of times a second. It reads and
writes ``deliveries`` only; the statements that differ by database come from the dialect.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

from sqlalchemy import or_, select, update

from eventcron.ledger.base import RECORD_CHUNK, LedgerBase
from eventcron.ledger.records import Added, Claimed, NewRow, Result
from eventcron.ledger.schema import deliveries

ENQUEUE_BATCH: Final = 5_000  # rows per INSERT transaction
SUPPRESS_BATCH: Final = 5_000  # rows per UPDATE transaction of suppress_users


class Queue(LedgerBase):
    """Delivery rows from enqueue to their outcome."""

    def enqueue(self, rows: Sequence[NewRow], now: int) -> int:
        """Insert delivery rows as :meth:`enqueue_counted` does; return rows added."""
        return self.enqueue_counted(rows, now).rows

    def enqueue_counted(self, rows: Sequence[NewRow], now: int) -> Added:
        """Insert delivery rows, ignoring occurrences already present; return rows added.

        The event id and bookkeeping are filled in here. Rows the campaign rules decided
        final (``NewRow.status``) are inserted so, with their reason; a pending row with a
        cap takes a slot of its window in the same transaction, or is inserted suppressed.
        Every row inserted counts as added, suppressed ones too.
        """
        added = capped = 0
        for start in range(0, len(rows), ENQUEUE_BATCH):
            batch = rows[start:start + ENQUEUE_BATCH]
            done = self._write(functools.partial(self._enqueue_in, chunk=batch, now=now))
            added += done.rows
            capped += done.capped
        return Added(added, capped)

    def suppress_users(self, users: AbstractSet[str], reason: str, now: int) -> int:
        """Set the pending rows of ``users`` suppressed with ``reason``; return how many.

        Rows a live claim holds are left to the dispatcher holding them (it checks again
        right before sending). The ids are found in one read, without the writer's lock,
        then set in short write transactions, so claims and outcomes get through between.
        """
        if not users:
            return 0
        with self._tx(write=False) as conn:
            ids = self._dialect.pending_of(conn, list(users))
        done = 0
        for start in range(0, len(ids), SUPPRESS_BATCH):
            chunk = ids[start:start + SUPPRESS_BATCH]
            with self._tx() as conn:
                done += self._dialect.suppress_ids(conn, chunk, reason, now)
        return done

    def claim(self, owner: str, now: int, limit: int, lease_ms: int) -> list[Claimed]:
        """Claim up to ``limit`` due rows for ``owner`` until ``now + lease_ms``."""
        if limit <= 0:
            return []
        with self._tx() as conn:
            rows = self._dialect.claim(conn, owner, now, limit, lease_ms)
        claimed = [Claimed(*r) for r in rows]
        claimed.sort(key=lambda c: c.id)
        return claimed

    def record(self, results: Sequence[Result], owner: str, now: int) -> None:
        """Write outcomes of claimed rows in one transaction and release their claims.

        A row is only updated while still pending, and, unless it was delivered, only
        while ``owner`` still holds it: a late answer never overwrites another instance's.
        """
        if not results:
            return
        delivered: list[tuple[Any, ...]] = [(r.id, r.attempts, r.status_code,
                                               r.delivered_at or now)
                                              for r in results if r.status == "delivered"]
        others: list[tuple[Any, ...]] = [(r.id, r.status, r.attempts, r.next_attempt_at,
                                          r.status_code, r.error)
                                         for r in results if r.status != "delivered"]
        sql = self._dialect.record_sql
        # One statement per few hundred answers, not one per answer: this runs thousands
        # of times a second, and the database driver lets other threads run (and then
        # waits to get back in) on every statement step.
        with self._tx() as conn:
            for start in range(0, len(delivered), RECORD_CHUNK):
                chunk = delivered[start:start + RECORD_CHUNK]
                conn.exec_driver_sql(sql("delivered", len(chunk)),
                                     (now, *itertools.chain.from_iterable(chunk)))
            for start in range(0, len(others), RECORD_CHUNK):
                chunk = others[start:start + RECORD_CHUNK]
                conn.exec_driver_sql(sql("settled", len(chunk)),
                                     (now, *itertools.chain.from_iterable(chunk), owner))

    def renew(self, owner: str, ids: Sequence[int], now: int, lease_ms: int) -> int:
        """Extend ``owner``'s claims on rows ``ids`` to ``now + lease_ms``; return how many."""
        renewed = 0
        with self._tx() as conn:
            for start in range(0, len(ids), RECORD_CHUNK):
                result = conn.execute(update(deliveries)
                                      .where(deliveries.c.id.in_(ids[start:start + RECORD_CHUNK]),
                                             deliveries.c.claimed_by == owner,
                                             deliveries.c.status == "pending")
                                      .values(claim_until=now + lease_ms))
                renewed += int(result.rowcount or 0)
        return renewed

    def release(self, ids: Sequence[int], owner: str) -> None:
        """Give back claims without recording an attempt (shutdown, pause)."""
        if not ids:
            return
        with self._tx() as conn:
            conn.execute(update(deliveries)
                         .where(deliveries.c.id.in_(list(ids)),
                                deliveries.c.claimed_by == owner)
                         .values(claimed_by=None, claim_until=None))

    def release_dead_owners(self, is_dead: Callable[[str], bool]) -> int:
        """Release claims whose owner ``is_dead(owner)`` says died; return rows released."""
        with self._tx(write=False) as conn:
            owners = conn.execute(select(deliveries.c.claimed_by).distinct().where(
                deliveries.c.claimed_by.is_not(None),
                deliveries.c.status == "pending")).scalars().all()
        dead = [o for o in owners if is_dead(o)]
        if not dead:
            return 0
        with self._tx() as conn:
            result = conn.execute(update(deliveries)
                                  .where(deliveries.c.claimed_by.in_(dead),
                                         deliveries.c.status == "pending")
                                  .values(claimed_by=None, claim_until=None))
        return int(result.rowcount or 0)

    def expire_due(self, now: int) -> int:
        """Mark pending rows past their expiry as expired; return how many."""
        with self._tx() as conn:
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.status == "pending",
                       deliveries.c.expires_at <= now,
                       deliveries.c.next_attempt_at <= now,
                       or_(deliveries.c.claim_until.is_(None), deliveries.c.claim_until < now))
                .values(status="expired", last_error="expired before it could be delivered",
                        claimed_by=None, claim_until=None, updated_at=now))
        return int(result.rowcount or 0)

    def next_due(self, now: int) -> int | None:
        """Return the earliest ``next_attempt_at`` of pending rows nobody holds (ms), or None.

        Rows claimed by anyone (in flight here or elsewhere) are skipped: counting them
        would make an idle dispatcher poll the ledger in a tight loop. Their leases end
        within the dispatcher's idle wait, which then finds them.
        """
        with self._tx(write=False) as conn:
            # Walks the due index in order and stops at the first unclaimed row.
            # Expired rows are left to the expiry sweep: a claim would skip them, so counting
            # them here would make the dispatcher poll in a tight loop until the sweep.
            value = conn.execute(
                select(deliveries.c.next_attempt_at)
                .where(deliveries.c.status == "pending", deliveries.c.expires_at > now,
                       or_(deliveries.c.claim_until.is_(None), deliveries.c.claim_until < now))
                .order_by(deliveries.c.next_attempt_at).limit(1)).scalar()
        return int(value) if value is not None else None
