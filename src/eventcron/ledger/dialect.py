"""Every difference between the ledger's databases, SQLite and PostgreSQL, in one place.

One class per database, side by side: how its engine is made (SQLite's private file,
pragmas and ``BEGIN IMMEDIATE``; PostgreSQL's pool), its driver's placeholder, the
statements that differ (claim, enqueue, upserts, the migration lock), and which errors are
worth waiting out. The ledger asks its :class:`Dialect` and never tests a database's name.
This module runs SQL only on connections it is handed, and touches the file system only
to create an SQLite ledger's file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from sqlalchemy import Column, Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from eventcron.ledger import queries
from eventcron.ledger.records import LedgerError, NewRow
from eventcron.ledger.schema import deliveries
from eventcron.problems import first_line

BUSY_TIMEOUT_MS: Final = 10_000  # milliseconds SQLite waits for another writer's lock
INSERT_CHUNK: Final = 500  # rows per INSERT statement (13 parameters each; SQLite allows 32766)
MIGRATION_LOCK: Final = 0x65766E74  # PostgreSQL advisory lock key held while migrating
MIN_SQLITE: Final = (3, 35, 0)  # UPDATE ... FROM (3.33), JSON functions, RETURNING (3.35)
# How many of a NewRow's fields, from schedule_id on, each shape of SQLITE_ENQUEUE stores.
_STORED: Final[dict[queries.EnqueueShape, int]] = {
    "plain": NewRow._fields.index("expires_at") + 1,
    "zoned": NewRow._fields.index("zone") + 1,
    "ruled": NewRow._fields.index("reason") + 1,
}


def parse_url(url: str) -> URL:
    """Parse a ledger's database URL; a malformed one is a :class:`LedgerError`."""
    try:
        return make_url(url)
    except ArgumentError:
        raise LedgerError(f"{url!r} is not a database URL; write sqlite:///eventcron.db"
                          " or postgresql+psycopg://user@host/db.") from None


def display_url(url: str) -> str:
    """Return a database URL fit to show: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def password_of(url: str) -> str | None:
    """Return the password a database URL carries, or None (to hide it where it appears)."""
    password = make_url(url).password
    return str(password) if password else None


def cause(e: SQLAlchemyError) -> str:
    """Return why a database call failed, to end a sentence with (no final period)."""
    return first_line(e).rstrip(".")


def in_memory(database: str | None) -> bool:
    """Tell whether an SQLite URL's database part (``sqlite://``) names a database in memory."""
    return database in (None, "", ":memory:")


def sqlite_file(database: str | None) -> Path | None:
    """Return the file an SQLite URL's database names; None in memory or for a ``file:`` URI."""
    if database is None or in_memory(database) or database.startswith("file:"):
        return None
    return Path(database)


def dialect_for(backend: str) -> Dialect:
    """Return the dialect of a URL's backend name; another database is a LedgerError."""
    if backend == "sqlite":
        return SQLite()
    if backend == "postgresql":
        return PostgreSQL()
    raise LedgerError(f"the ledger must be SQLite or PostgreSQL, not {backend!r}.")


class Dialect(ABC):
    """What one database does its own way; the ledger holds one per open database."""

    name: ClassVar[str]  # SQLAlchemy's backend name
    placeholder: ClassVar[str]  # the driver's parameter marker

    def __init__(self) -> None:
        # Hot-path statements sized by row count, rendered once each.
        self._sized: dict[tuple[str, int], str] = {}

    def render(self, template: str, **fields: str) -> str:
        """Render a text of ``queries``: ``{p}`` becomes this driver's placeholder."""
        return template.format(p=self.placeholder, **fields)

    def record_sql(self, outcome: queries.Outcome, rows: int) -> str:
        """Return the statement writing ``rows`` outcomes of one kind (see ``queries.RECORD``)."""
        key = (outcome, rows)
        sql = self._sized.get(key)
        if sql is None:
            update, width, first = queries.RECORD[outcome]
            row = "(" + ", ".join([self.placeholder] * width) + ")"
            values = ", ".join([self.render(first), *[row] * (rows - 1)])
            sql = self._sized[key] = self.render(update, values=values)
        return sql

    @abstractmethod
    def engine(self, url: str, database: str | None) -> Engine:
        """Create the engine for ``url``, whose database part is ``database``."""

    def turns(self, engine: Engine) -> contextlib.AbstractContextManager[Any]:
        """Return what threads hold around a transaction (nothing, unless they share one)."""
        del engine
        return contextlib.nullcontext()

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """Return ``INSERT ... ON CONFLICT DO NOTHING`` into ``table``."""

    @abstractmethod
    def upsert(self, table: Table, values: dict[str, Any], key: Column[Any],
               changing: dict[str, Any]) -> Any:
        """Return an INSERT of ``values`` that updates ``changing`` where ``key`` exists."""

    @abstractmethod
    def lock_migrations(self, conn: Connection) -> None:
        """Make instances migrating at once wait for each other (within ``conn``'s transaction)."""

    @abstractmethod
    def claim(self, conn: Connection, owner: str, now: int, limit: int,
              lease_ms: int) -> Sequence[Sequence[Any]]:
        """Lease up to ``limit`` due rows to ``owner``; return them as ``Claimed`` fields."""

    @abstractmethod
    def insert_deliveries(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                          now: int) -> int:
        """Insert rows (``ids`` their event ids) skipping conflicts; return rows added."""

    @abstractmethod
    def insert_listed(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                      now: int) -> list[tuple[int, str]]:
        """Insert rows as :meth:`insert_deliveries`; return ``(id, event_id)`` of those added."""

    @abstractmethod
    def slots_held(self, conn: Connection,
                   keys: Sequence[tuple[str, str, int]]) -> Sequence[Sequence[Any]]:
        """Return the cap slots of these (user, cap, window) keys.

        Each as ``(user, cap, window, slot, delivery_id, schedule_id, scheduled_for)``.
        """

    @abstractmethod
    def take_slots(self, conn: Connection, slots: Sequence[tuple[Any, ...]], now: int) -> int:
        """Insert cap slots, skipping those taken; return how many were taken here.

        Each is ``(user, cap, window, slot, until, delivery_id, schedule_id, scheduled_for)``,
        sorted by key.
        """

    @abstractmethod
    def suppress_rows(self, conn: Connection, reasons: Sequence[tuple[int, str]],
                      now: int) -> None:
        """Set pending rows suppressed, each ``(id, reason)``."""

    @abstractmethod
    def pending_of(self, conn: Connection, users: Sequence[str]) -> list[int]:
        """Return the ids of the pending rows of these users."""

    @abstractmethod
    def suppress_ids(self, conn: Connection, ids: Sequence[int], reason: str, now: int) -> int:
        """Set rows ``ids`` suppressed while pending and held by no live claim; return how many."""

    def lost_race(self, e: SQLAlchemyError) -> bool:
        """Tell whether a transaction failed only because a concurrent one won (worth a retry)."""
        del e
        return False

    @abstractmethod
    def temporary(self, e: SQLAlchemyError) -> bool:
        """Tell whether trying again later may work."""


class SQLite(Dialect):
    """SQLite through sqlite3: one writer at a time, taken up front."""

    name = "sqlite"
    placeholder = "?"

    def __init__(self) -> None:
        super().__init__()
        self._pick = self.render(queries.SQLITE_PICK)
        self._take = self.render(queries.SQLITE_TAKE)
        self._added = self.render(queries.SQLITE_ADDED)
        self._held = self.render(queries.SQLITE_SLOTS_HELD)
        self._take_slots = self.render(queries.SQLITE_TAKE_SLOTS)
        self._suppress_rows = self.render(queries.SQLITE_SUPPRESS_ROWS)
        self._pending_of = self.render(queries.SQLITE_PENDING_OF)
        self._suppress_ids = self.render(queries.SQLITE_SUPPRESS_IDS)

    def turns(self, engine: Engine) -> contextlib.AbstractContextManager[Any]:
        """Return a lock for an in-memory ledger: one connection, so threads take turns."""
        if isinstance(engine.pool, StaticPool):
            return threading.RLock()
        return contextlib.nullcontext()

    def engine(self, url: str, database: str | None) -> Engine:
        """Create the engine, and the ledger's file (private) where it does not exist yet.

        An in-memory ledger (``sqlite://``) is one connection shared by every thread:
        each connection of its own would be another, empty, database. Closing the ledger
        closes that connection, and the database is gone.
        """
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise LedgerError(f"the ledger needs SQLite {'.'.join(map(str, MIN_SQLITE))} or"
                              f" newer; this Python has {sqlite3.sqlite_version}.")
        path = sqlite_file(database)
        if path is not None:
            _create_private(path)
        if in_memory(database):
            engine = create_engine(url, poolclass=StaticPool, connect_args={
                "timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        else:
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            # Take transaction control from pysqlite so BEGIN IMMEDIATE below is what runs.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # in memory: stays "memory", harmless
            # WAL + NORMAL: a committed transaction survives a process crash (kill -9); a
            # power cut may roll back the last ones, which the fire/claim records make safe
            # to redo.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the lock up front: a deferred transaction that upgrades to a
            # writer can fail with "database is locked" at once, without waiting out
            # busy_timeout.
            read = conn.get_execution_options().get("eventcron_read", False)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine

    def insert(self, table: Table) -> Any:
        """Return ``INSERT ... ON CONFLICT DO NOTHING`` into ``table``."""
        return sqlite_dialect.insert(table).on_conflict_do_nothing()

    def lock_migrations(self, conn: Connection) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already makes other writers wait."""

    def upsert(self, table: Table, values: dict[str, Any], key: Column[Any],
               changing: dict[str, Any]) -> Any:
        """Return an INSERT of ``values`` that updates ``changing`` where ``key`` exists."""
        return sqlite_dialect.insert(table).values(**values).on_conflict_do_update(
            index_elements=[key], set_=changing)

    def claim(self, conn: Connection, owner: str, now: int, limit: int,
              lease_ms: int) -> Sequence[Sequence[Any]]:
        """Pick due rows as one JSON array, then lease them: two steps, not one per row.

        Both run inside the writer's lock: RETURNING would step once per row, and every
        step lets the busy event loop take the interpreter back before this thread may go on.
        """
        packed = conn.exec_driver_sql(self._pick, (now, now, now, limit)).scalar()
        rows: list[list[Any]] = json.loads(packed or "[]")
        if rows:
            conn.exec_driver_sql(self._take, (owner, now + lease_ms,
                                              json.dumps([r[0] for r in rows])))
        return rows

    def insert_deliveries(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                          now: int) -> int:
        """Insert with multi-row INSERTs of plain values: one driver step per few hundred.

        The hot path of a big fire. rowcount counts only rows inserted, not conflicts skipped.
        """
        added = 0
        for part in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[part:part + INSERT_CHUNK]
            pairs = zip(chunk, ids[part:part + INSERT_CHUNK], strict=True)
            shape = _shape(chunk)
            # The row's fields the shape stores, in its columns' order: see SQLITE_ENQUEUE.
            width = _STORED[shape]
            params = tuple(v for r, eid in pairs for v in (eid, *r[:width], now, now))
            added += int(conn.exec_driver_sql(self._insert_sql(len(chunk), shape),
                                              params).rowcount or 0)
        return added

    def insert_listed(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                      now: int) -> list[tuple[int, str]]:
        """Insert as :meth:`insert_deliveries`, then read the rows added as one JSON array.

        Not RETURNING, for the reason :meth:`claim` gives.
        """
        before = conn.exec_driver_sql(queries.SQLITE_LAST_ID).scalar_one()
        if not self.insert_deliveries(conn, rows, ids, now):
            return []
        packed = conn.exec_driver_sql(self._added, (before,)).scalar()
        return [(int(i), e) for i, e in json.loads(packed or "[]")]

    def slots_held(self, conn: Connection,
                   keys: Sequence[tuple[str, str, int]]) -> Sequence[Sequence[Any]]:
        """Return the cap slots of these keys, read as one JSON array."""
        packed = conn.exec_driver_sql(self._held, (json.dumps(keys),)).scalar()
        rows: list[list[Any]] = json.loads(packed or "[]")
        return rows

    def take_slots(self, conn: Connection, slots: Sequence[tuple[Any, ...]], now: int) -> int:
        """Insert cap slots given as one JSON array; rowcount counts only those inserted."""
        return int(conn.exec_driver_sql(self._take_slots, (now, json.dumps(slots))).rowcount
                   or 0)

    def suppress_rows(self, conn: Connection, reasons: Sequence[tuple[int, str]],
                      now: int) -> None:
        """Set rows suppressed with their reasons, given as one JSON array."""
        conn.exec_driver_sql(self._suppress_rows, (now, json.dumps(reasons)))

    def pending_of(self, conn: Connection, users: Sequence[str]) -> list[int]:
        """Return the ids of these users' pending rows, read as one JSON array."""
        packed = conn.exec_driver_sql(self._pending_of, (json.dumps(list(users)),)).scalar()
        found: list[int] = json.loads(packed or "[]")
        return found

    def suppress_ids(self, conn: Connection, ids: Sequence[int], reason: str, now: int) -> int:
        """Set rows suppressed, their ids given as one JSON array; return how many."""
        return int(conn.exec_driver_sql(self._suppress_ids, (
            reason, now, json.dumps(list(ids)), now)).rowcount or 0)

    def _insert_sql(self, rows: int, shape: queries.EnqueueShape = "plain") -> str:
        key = (shape, rows)
        sql = self._sized.get(key)
        if sql is None:
            columns, row = queries.SQLITE_ENQUEUE_SHAPES[shape]
            sql = self._sized[key] = self.render(
                queries.SQLITE_ENQUEUE, columns=columns,
                values=", ".join([self.render(row)] * rows))
        return sql

    def temporary(self, e: SQLAlchemyError) -> bool:
        """Tell whether to wait: a busy or locked file may free up, an unwritable one will not."""
        if not isinstance(e, OperationalError):
            return False
        code = getattr(getattr(e, "orig", None), "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        return "locked" in cause(e) or "busy" in cause(e)


def _shape(rows: Sequence[NewRow]) -> queries.EnqueueShape:
    """Return the least the SQLite statement must store of these rows (see SQLITE_ENQUEUE)."""
    shape: queries.EnqueueShape = "plain"
    for r in rows:
        if r.status != "pending" or r.reason is not None:
            return "ruled"
        if r.zone is not None:
            shape = "zoned"
    return shape


def _create_private(path: Path) -> None:
    """Check an SQLite ledger's folder, and create its file private (0600) if missing."""
    if not path.parent.is_dir():
        why = (f"{path.parent} is not a folder" if path.parent.exists() else
               f"the folder {path.parent} does not exist")
        raise LedgerError(f"cannot open the ledger {path}: {why}.")
    if path.is_dir():
        raise LedgerError(f"cannot open the ledger {path}: it is a folder, not a file.")
    if not path.exists():
        # Create the file before SQLite does with the umask's mode.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise LedgerError(f"cannot create the ledger {path}: {e.strerror}.") from None


class PostgreSQL(Dialect):
    """PostgreSQL through psycopg: rows locked one by one, skipped when another holds them."""

    name = "postgresql"
    placeholder = "%s"

    def __init__(self) -> None:
        super().__init__()
        self._claim = self.render(queries.POSTGRES_CLAIM)
        self._held = self.render(queries.POSTGRES_SLOTS_HELD)
        self._take_slots = self.render(queries.POSTGRES_TAKE_SLOTS)
        self._suppress_rows = self.render(queries.POSTGRES_SUPPRESS_ROWS)
        self._pending_of = self.render(queries.POSTGRES_PENDING_OF)
        self._suppress_ids = self.render(queries.POSTGRES_SUPPRESS_IDS)

    def engine(self, url: str, database: str | None) -> Engine:
        """Create a pooled engine that checks a connection before using it."""
        try:
            return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        except ImportError:
            raise LedgerError("a PostgreSQL ledger needs psycopg: pip install"
                              " 'eventcron[postgres]'.") from None

    def insert(self, table: Table) -> Any:
        """Return ``INSERT ... ON CONFLICT DO NOTHING`` into ``table``."""
        return pg_dialect.insert(table).on_conflict_do_nothing()

    def upsert(self, table: Table, values: dict[str, Any], key: Column[Any],
               changing: dict[str, Any]) -> Any:
        """Return an INSERT of ``values`` that updates ``changing`` where ``key`` exists."""
        return pg_dialect.insert(table).values(**values).on_conflict_do_update(
            index_elements=[key], set_=changing)

    def lock_migrations(self, conn: Connection) -> None:
        """Hold an advisory lock to the transaction's end.

        Instances starting together would race to create the tables; the lock makes the
        others wait and then find them.
        """
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})

    def claim(self, conn: Connection, owner: str, now: int, limit: int,
              lease_ms: int) -> Sequence[Sequence[Any]]:
        """Lease due rows in one statement; rows another claimer has locked are skipped."""
        return conn.exec_driver_sql(self._claim,
                                    (owner, now + lease_ms, now, now, now, limit)).all()

    def insert_deliveries(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                          now: int) -> int:
        """Insert through SQLAlchemy's batched multi-row VALUES; RETURNING counts the new rows.

        psycopg reports no rowcount for a batch.
        """
        return len(conn.execute(self.insert(deliveries).returning(deliveries.c.id),
                                _values(rows, ids, now)).all())

    def insert_listed(self, conn: Connection, rows: Sequence[NewRow], ids: Sequence[str],
                      now: int) -> list[tuple[int, str]]:
        """Insert as :meth:`insert_deliveries`, RETURNING the id and event id of each row added."""
        added = conn.execute(self.insert(deliveries).returning(deliveries.c.id,
                                                                deliveries.c.event_id),
                             _values(rows, ids, now)).all()
        return [(int(i), e) for i, e in added]

    def slots_held(self, conn: Connection,
                   keys: Sequence[tuple[str, str, int]]) -> Sequence[Sequence[Any]]:
        """Return the cap slots of these keys, passed as one array per column."""
        users, caps, windows = (list(c) for c in zip(*keys, strict=True)) if keys else ([], [], [])
        return conn.exec_driver_sql(self._held, (users, caps, windows)).all()

    def take_slots(self, conn: Connection, slots: Sequence[tuple[Any, ...]], now: int) -> int:
        """Insert cap slots passed as one array per column; RETURNING counts those taken."""
        columns = [list(c) for c in zip(*slots, strict=True)]
        return len(conn.exec_driver_sql(self._take_slots, (now, *columns)).all())

    def suppress_rows(self, conn: Connection, reasons: Sequence[tuple[int, str]],
                      now: int) -> None:
        """Set rows suppressed with their reasons, passed as two arrays."""
        conn.exec_driver_sql(self._suppress_rows, (now, [i for i, _ in reasons],
                                                   [why for _, why in reasons]))

    def pending_of(self, conn: Connection, users: Sequence[str]) -> list[int]:
        """Return the ids of these users' pending rows, the users passed as one array."""
        return [int(i) for i, in conn.exec_driver_sql(self._pending_of, (list(users),)).all()]

    def suppress_ids(self, conn: Connection, ids: Sequence[int], reason: str, now: int) -> int:
        """Set rows suppressed, their ids passed as one array; return how many."""
        return int(conn.exec_driver_sql(self._suppress_ids, (
            reason, now, list(ids), now)).rowcount or 0)

    def lost_race(self, e: SQLAlchemyError) -> bool:
        """Tell a deadlock (40P01) or serialization failure (40001): the other side won."""
        return getattr(getattr(e, "orig", None), "sqlstate", None) in ("40P01", "40001")

    def temporary(self, e: SQLAlchemyError) -> bool:
        """Tell whether to wait: an unreachable server may come back, a wrong login will not."""
        if not isinstance(e, OperationalError):
            return False
        orig = getattr(e, "orig", None)
        # psycopg gives no SQLSTATE for a refused connection; the server's sentence says it.
        state = getattr(orig, "sqlstate", None) or ""
        refused = re.search(r"password authentication failed|role .* does not exist|database"
                            r" .* does not exist|no pg_hba.conf entry", str(orig))
        return not (state.startswith("28") or state == "3D000" or refused)


def _values(rows: Sequence[NewRow], ids: Sequence[str], now: int) -> list[dict[str, Any]]:
    """Return the column values of rows to insert (their reason goes to last_error)."""
    return [{"event_id": eid, "schedule_id": r.schedule_id, "app_user_id": r.app_user_id,
             "event_type": r.event_type, "scheduled_for": r.scheduled_for, "data": r.data,
             "next_attempt_at": r.next_attempt_at, "expires_at": r.expires_at, "zone": r.zone,
             "status": r.status, "last_error": r.reason, "attempts": 0, "created_at": now,
             "updated_at": now}
            for r, eid in zip(rows, ids, strict=True)]
