"""The events ``eventcron send`` sends: a row and a fire record each, under schedule ``-``.

The part of :class:`Ledger` behind ``eventcron send``, so ``deliveries`` and ``history``
show everything eventcron sent. A send is recorded before it goes out, in a state the
dispatcher never claims (``failed``, with no attempt and a reason saying its answer is not
recorded yet), and its outcome written after: an unwritable ledger stops the send before
anything is sent, and a send cut short (killed, the machine lost) still leaves its row.
Its fire record is written ``fired`` at once, never ``firing``, so neither recovery nor the
retirement of schedules that left the plan ever takes it for one of theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, TypeVar

from sqlalchemy import Connection, update
from sqlalchemy.exc import SQLAlchemyError

from eventcron.ledger.base import LedgerBase
from eventcron.ledger.dialect import cause, display_url
from eventcron.ledger.records import SEND_ZONE, LedgerError
from eventcron.ledger.schema import deliveries, fires
from eventcron.states import SEND_SCHEDULE

# The reason a send's row carries until its outcome is written; it stays when the command
# was stopped between the request and the record (the endpoint may have taken the event).
UNANSWERED: Final = ("the endpoint's answer is not recorded: eventcron send is waiting for"
                     " it, or stopped before recording it (the event may have been"
                     " delivered)")

T = TypeVar("T")


class Sends(LedgerBase):
    """Rows and fire records of ``eventcron send``."""

    def begin_send(self, event_id: str, app_user_id: str, event_type: str, data: str,
                   at: int, *, instance: str) -> int:
        """Record a send about to go out at ``at`` (ms); return its row's id.

        The row is ``failed`` with no attempt and the reason :data:`UNANSWERED` until
        :meth:`finish_send`; its occurrence (``-`` at ``at``, UTC) is recorded ``fired`` by
        ``instance``, with one row more when another send shares its millisecond. Raises
        :class:`LedgerError`, a sentence, when the ledger cannot take it, or already holds
        this user's event of this type at this millisecond: then nothing may be sent.
        """
        def work(conn: Connection) -> int:
            row_id = conn.execute(self._dialect.insert(deliveries).values(
                event_id=event_id, schedule_id=SEND_SCHEDULE, app_user_id=app_user_id,
                event_type=event_type, scheduled_for=at, data=data, status="failed",
                attempts=0, next_attempt_at=at, expires_at=at, last_error=UNANSWERED,
                created_at=at, updated_at=at,
            ).returning(deliveries.c.id)).scalar()
            if row_id is None:
                raise LedgerError(f"the ledger {display_url(self.url)} already holds an event"
                                  f" {event_type} sent to {app_user_id} at this millisecond;"
                                  " send it again.")
            added = conn.execute(self._dialect.insert(fires).values(
                schedule_id=SEND_SCHEDULE, zone=SEND_ZONE, scheduled_for=at, status="fired",
                users=1, updated_at=at, instance=instance,
            ).returning(fires.c.scheduled_for)).first()
            if added is None:
                conn.execute(update(fires).where(
                    fires.c.schedule_id == SEND_SCHEDULE, fires.c.zone == SEND_ZONE,
                    fires.c.scheduled_for == at).values(users=fires.c.users + 1,
                                                        updated_at=at))
            return int(row_id)

        return self._sentence(lambda: self._write(work))

    def finish_send(self, row_id: int, status: Literal["delivered", "failed"],
                    status_code: int | None, error: str | None, now: int) -> None:
        """Write the outcome of the send recorded as ``row_id``: one attempt, made at ``now``.

        Raises :class:`LedgerError`, a sentence, when the ledger cannot take it or the row
        is no longer the one :meth:`begin_send` wrote.
        """
        def work(conn: Connection) -> int:
            return int(conn.execute(update(deliveries).where(
                deliveries.c.id == row_id, deliveries.c.schedule_id == SEND_SCHEDULE,
                deliveries.c.status == "failed", deliveries.c.attempts == 0,
            ).values(status=status, attempts=1, last_status_code=status_code,
                     last_error=None if status == "delivered" else error,
                     delivered_at=now if status == "delivered" else None,
                     updated_at=now)).rowcount or 0)

        if self._sentence(lambda: self._write(work)) != 1:
            raise LedgerError(f"the row of this send is gone from the ledger"
                              f" {display_url(self.url)} (pruned or deleted meanwhile).")

    def _sentence(self, call: Callable[[], T]) -> T:
        """Run ``call``; a database failure becomes a :class:`LedgerError` with its cause."""
        try:
            return call()
        except SQLAlchemyError as e:
            raise LedgerError(f"cannot write to the ledger {display_url(self.url)}:"
                              f" {cause(e)}.", temporary=self._dialect.temporary(e)) from None
