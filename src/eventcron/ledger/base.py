"""The base every part of :class:`Ledger` extends: one database, its transactions, its schema.

Opening (and checking the URL and the schema version), closing, the transaction helper,
the write probe, and the enqueue shared by firing and the delivery queue. Each concern of
the ledger is a class extending :class:`LedgerBase` in a module of its own; ``database.py``
puts them together. Database differences are asked of ``dialect.py``, never tested here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Self, TypeVar

from sqlalchemy import Connection, inspect, select, update
from sqlalchemy.exc import SQLAlchemyError

from eventcron.ledger import caps, schema
from eventcron.ledger.dialect import (
    cause,
    dialect_for,
    display_url,
    parse_url,
    sqlite_file,
)
from eventcron.ledger.records import Added, LedgerError, NewRow, event_ids_of
from eventcron.ledger.schema import meta_table

RECORD_CHUNK: Final = 500  # outcomes per UPDATE statement (4-6 parameters each)
_RACES: Final = 5  # tries of a write transaction that lost a race (see LedgerBase._write)

T = TypeVar("T")

_WRITE: Final[dict[str, Any]] = {}
_READ: Final[dict[str, Any]] = {"eventcron_read": True}  # SQLite: BEGIN, not BEGIN IMMEDIATE


class LedgerBase:
    """Access to one ledger database: its engine and transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = parse_url(url)
        self.dialect = parsed.get_backend_name()
        self._dialect = dialect_for(self.dialect)
        self.engine = self._dialect.engine(url, parsed.database)
        self._turn = self._dialect.turns(self.engine)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Self:
        """Open a ledger and check its schema version; create it unless ``create=False``.

        Operator commands open with ``create=False``, so a mistyped URL is an error rather
        than a new empty ledger.
        """
        if not create:
            parsed = parse_url(url)
            path = sqlite_file(parsed.database) if parsed.get_backend_name() == "sqlite" else None
            if path is not None and not path.exists():
                raise LedgerError(f"there is no ledger at {parsed.database}; is the --database"
                                  " URL (or the file's database setting) right?")
        ledger = cls(url)
        try:
            if not create and not ledger._has_schema():
                raise LedgerError(f"{display_url(url)} holds no eventcron ledger; is the"
                                  " --database URL right?")
            ledger.migrate()
        except SQLAlchemyError as e:
            ledger.close()
            raise LedgerError(f"cannot open the ledger {display_url(url)}: {cause(e)}.",
                              temporary=ledger._dialect.temporary(e)) from None
        except BaseException:
            ledger.close()
            raise
        return ledger

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        opts = _WRITE if write else _READ
        with (self._turn, self.engine.connect().execution_options(**opts) as conn,
              conn.begin()):
            yield conn

    # --- schema -------------------------------------------------------------------------

    def _has_schema(self) -> bool:
        with self._tx(write=False) as conn:
            return bool(inspect(conn).has_table(meta_table.name))

    def migrate(self) -> None:
        """Create the tables on first use; refuse a ledger from a newer eventcron."""
        with self._tx() as conn:
            self._dialect.lock_migrations(conn)
            schema.migrate(conn, display_url(self.url))

    def schema_version(self) -> int:
        """Return the schema version stored in the ledger."""
        with self._tx(write=False) as conn:
            return int(conn.execute(select(meta_table.c.value).where(
                meta_table.c.key == "schema_version")).scalar_one())

    def check_writable(self, now: int) -> None:
        """Probe a write (as :meth:`probe`); raise :class:`LedgerError`, a sentence, if it fails.

        ``run`` calls this at start: a ledger it can read but not write is a configuration
        error, not something to find at the first fire.
        """
        try:
            self.probe(now)
        except SQLAlchemyError as e:
            raise LedgerError(f"cannot write to the ledger {display_url(self.url)}: {cause(e)}.",
                              temporary=self._dialect.temporary(e)) from None

    def probe(self, now: int) -> None:
        """Write a heartbeat row: raises when the ledger cannot take writes."""
        with self._tx() as conn:
            conn.execute(self._dialect.insert(meta_table).values(key="heartbeat",
                                                                 value=str(now)))
            conn.execute(update(meta_table).where(meta_table.c.key == "heartbeat")
                         .values(value=str(now)))

    # --- shared by firing and the queue -------------------------------------------------

    def _enqueue_in(self, conn: Connection, chunk: Sequence[NewRow], now: int) -> Added:
        """Insert rows within the caller's transaction; return how many were new, and capped.

        The event id and bookkeeping are filled in here. Each new pending row with a cap
        takes a slot of its window in this same transaction, or becomes ``suppressed``
        (see ``caps.py``); rows inserted final take none. Rows already present are left as
        they are, with the slot they took when they were inserted.
        """
        if not chunk:
            return Added(0, 0)
        ids = event_ids_of(chunk)
        if not any(r.cap is not None and r.status == "pending" for r in chunk):
            # the fast path
            return Added(self._dialect.insert_deliveries(conn, chunk, ids, now), 0)
        added = self._dialect.insert_listed(conn, chunk, ids, now)
        capped = {eid: r for r, eid in zip(chunk, ids, strict=True)
                  if r.cap is not None and r.status == "pending"}
        wants = [caps.Want(r.app_user_id, r.cap.name, r.cap.window, delivery_id, r.cap.limit,
                           r.cap.until, r.cap.label, r.schedule_id, r.scheduled_for)
                 for delivery_id, eid in added
                 if (r := capped.get(eid)) is not None and r.cap is not None]
        return Added(len(added), caps.take(conn, self._dialect, wants, now))

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction, again if it lost a race (a deadlock).

        Instances taking cap slots at once can deadlock on PostgreSQL when one retries a
        slot another holds; the database then fails one transaction, which is safe to redo.
        """
        for attempt in range(1, _RACES + 1):
            try:
                with self._tx() as conn:
                    return work(conn)
            except SQLAlchemyError as e:
                if attempt == _RACES or not self._dialect.lost_race(e):
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises
