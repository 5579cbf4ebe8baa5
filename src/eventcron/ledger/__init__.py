"""The ledger: every occurrence for every user, one row each, and every query on it.

The unique key (schedule, scheduled_for, app_user_id, event_type) makes enqueueing
idempotent: a fire repeated after a crash, or fired by two instances, yields one row.
Rows are claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serializes
writers with ``BEGIN IMMEDIATE``), so any number of processes can share a ledger and the
claims of one that died simply expire.

All times are integers: milliseconds since the Unix epoch, UTC. Methods are synchronous;
the daemon runs them on a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from eventcron.clock import monotonic
from eventcron.problems import first_line
from eventcron.states import FINAL_STATUSES, REPLAYABLE, STATUSES, Status

_T = TypeVar("_T")

SCHEMA_VERSION: Final = 1  # bump with a migration in MIGRATIONS; never edit a released table
BUSY_TIMEOUT_MS: Final = 10_000  # milliseconds SQLite waits for another writer's lock
ENQUEUE_BATCH: Final = 5_000  # rows per INSERT statement
PRUNE_BATCH: Final = 1_000  # rows a prune step looks at (the daemon's first step)
PRUNE_STEP_SECONDS: Final = 0.02  # the daemon's prune steps grow or shrink to take this long
PRUNE_BATCHES: Final = (100, 20_000)  # the least and most rows a daemon's prune step takes
RECORD_CHUNK: Final = 500  # outcomes per UPDATE statement (4-6 parameters each)
INSERT_CHUNK: Final = 500  # rows per INSERT statement (10 parameters each; SQLite allows 32766)
MIGRATION_LOCK: Final = 0x65766E74  # PostgreSQL advisory lock key held while migrating
EVENT_NAMESPACE: Final = uuid.UUID("6f1b8f1e-3c1a-5f0e-9d43-4a7e0c5b2d11")  # UUIDv5 namespace

PASSED_BEFORE_LOAD: Final = "passed before the schedule was loaded"  # a skip's reason

metadata = MetaData()

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: a rowid alias, the fast path

meta_table = Table(
    "eventcron_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("schedule_id", Text, nullable=False),
    Column("app_user_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("scheduled_for", BigInteger, nullable=False),  # nominal time, ms
    Column("data", Text, nullable=False),  # the JSON object sent, rendered at enqueue
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),  # ms; jitter and backoff applied
    Column("expires_at", BigInteger, nullable=False),  # ms; never sent after this
    Column("claimed_by", Text),  # instance holding the lease, or NULL
    Column("claim_until", BigInteger),  # ms; the lease ends here
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    UniqueConstraint("schedule_id", "scheduled_for", "app_user_id", "event_type",
                     name="uq_deliveries_occurrence"),
)
# Only pending rows are ever claimed, so the claim index holds only them. The id breaks
# ties first come, first served: a dead instance's rows are taken over before newer ones.
Index("ix_deliveries_due", deliveries.c.next_attempt_at, deliveries.c.id,
      sqlite_where=deliveries.c.status == "pending",
      postgresql_where=deliveries.c.status == "pending")
Index("ix_deliveries_updated", deliveries.c.updated_at)

fires = Table(
    "fires", metadata,
    Column("schedule_id", Text, primary_key=True),
    Column("zone", Text, primary_key=True),
    Column("scheduled_for", BigInteger, primary_key=True),  # ms
    Column("status", String(10), nullable=False),  # firing | fired | skipped
    Column("reason", Text),
    Column("users", Integer, nullable=False, default=0),  # rows this fire enqueued
    Column("updated_at", BigInteger, nullable=False),
)
# Unfinished fires, by occurrence (the primary key needs the zone too): few rows, and what
# pruning asks of every row it deletes. An index only, so older versions read the ledger
# as before; migrate() adds it to ledgers created without it.
ix_fires_firing = Index("ix_fires_firing", fires.c.schedule_id, fires.c.scheduled_for,
                        sqlite_where=fires.c.status == "firing",
                        postgresql_where=fires.c.status == "firing")

job_state = Table(
    "job_state", metadata,
    Column("job", Text, primary_key=True),  # schedule@zone
    Column("schedule_id", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),  # of what decides fire times
    Column("watermark", BigInteger, nullable=False),  # ms; occurrences up to here are handled
    Column("updated_at", BigInteger, nullable=False),
)

# One row per instance that ever ran: written every HEARTBEAT_INTERVAL, marked stopped on a
# clean exit. A new table, not a change to one: create_all adds it to older ledgers.
instances = Table(
    "instances", metadata,
    Column("name", Text, primary_key=True),  # the claim owner name
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Text, nullable=False),
    Column("started_at", BigInteger, nullable=False),  # ms
    Column("last_seen", BigInteger, nullable=False),  # ms
    Column("stopped_at", BigInteger),  # ms; NULL while running (or after a crash)
    Column("paused", Integer, nullable=False, default=0),  # 1 while a 401 holds sending
    Column("plan_sha256", Text, nullable=False),  # of the schedule file it runs
)

# version -> statements taking a ledger from version-1 to version. Empty until a release
# changes the schema; each step runs in one transaction.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}


class LedgerError(Exception):
    """The ledger cannot be opened or used; the message is a sentence with the cause.

    ``temporary`` is true when trying again later may work (the database is unreachable or
    locked), false for a configuration problem (a bad URL, a missing driver, a ledger from
    a newer eventcron).
    """

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


def event_id(schedule_id: str, app_user_id: str, event_type: str, scheduled_for: int) -> str:
    """Derive the event id (sent as Idempotency-Key) from the occurrence key: a UUIDv5.

    The name hashed is ``schedule_id␟event_type␟scheduled_for␟app_user_id`` (␟ = U+001F):
    the user comes last so one occurrence's users share a hashed prefix.
    """
    return event_ids(schedule_id, event_type, scheduled_for)(app_user_id)


def event_ids(schedule_id: str, event_type: str, scheduled_for: int) -> Callable[[str], str]:
    """Return the event id function for the users of one occurrence.

    It runs for every user of every fire: the shared prefix is hashed once, and no UUID
    object is built; the result is the string ``str(uuid.uuid5(EVENT_NAMESPACE, name))``.
    """
    prefix = hashlib.sha1(_NAMESPACE_BYTES, usedforsecurity=False)
    prefix.update(f"{schedule_id}\x1f{event_type}\x1f{scheduled_for}\x1f".encode())

    def derive(app_user_id: str) -> str:
        h = prefix.copy()
        h.update(app_user_id.encode())
        digest = bytearray(h.digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        x = digest.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    return derive


_NAMESPACE_BYTES: Final = EVENT_NAMESPACE.bytes


class NewRow(NamedTuple):
    """A row to enqueue: one occurrence for one user."""

    schedule_id: str
    app_user_id: str
    event_type: str
    scheduled_for: int  # ms, nominal
    data: str  # rendered JSON object
    next_attempt_at: int  # ms: nominal plus jitter
    expires_at: int  # ms


UNKNOWN: Final = "-"  # an identity part (boot, pid namespace) this system does not tell


class Owner(NamedTuple):
    """Who holds a claim; its name ``host:pid:boot:pidns:nonce`` is written and read here only.

    A process id means something only within one PID namespace of one boot of one host:
    two containers sharing the host's network (so its name) and kernel (so its boot id)
    can both be PID 1. Names written before the namespace was part of them have four
    fields; they parse with ``pid_ns`` None.
    """

    host: str
    pid: int
    boot: str  # the first 8 characters of the boot id, or UNKNOWN
    pid_ns: str | None  # the PID namespace's inode number, UNKNOWN, or None (old name)
    nonce: str  # tells apart lives of one process id

    def format(self) -> str:
        """Return the name stored in ``claimed_by``."""
        ns = () if self.pid_ns is None else (self.pid_ns,)
        return ":".join((self.host, str(self.pid), self.boot, *ns, self.nonce))

    @classmethod
    def parse(cls, name: str) -> Owner | None:
        """Read a name written by :meth:`format` (of this or an earlier version), else None."""
        parts = name.split(":")
        if len(parts) not in (4, 5) or not parts[1].isdigit() or not all(parts):
            return None
        if len(parts) == 4:
            host, pid, boot, nonce = parts
            return cls(host, int(pid), boot, None, nonce)
        host, pid, boot, pid_ns, nonce = parts
        return cls(host, int(pid), boot, pid_ns, nonce)

    @classmethod
    def here(cls) -> Owner:
        """Return a new identity for this process, with a fresh nonce."""
        return cls(socket.gethostname(), os.getpid(), boot_id(), pid_namespace(),
                   uuid.uuid4().hex[:8])


def instance_name() -> str:
    """Return a new claim owner name for this process (see :class:`Owner`)."""
    return Owner.here().format()


def owner_is_dead(owner: str, me: str) -> bool:
    """Tell whether the claim owner named ``owner`` was a process here that died.

    ``me`` is this process's owner name. Only owners of this very host, boot and PID
    namespace are judged (elsewhere a process id means another process); any other, and
    any name of an earlier version (no namespace in it), waits for its lease to end.
    """
    theirs, mine = Owner.parse(owner), Owner.parse(me)
    if theirs is None or mine is None or owner == me:
        return False
    if (theirs.host, theirs.boot, theirs.pid_ns) != (mine.host, mine.boot, mine.pid_ns):
        return False
    if mine.pid_ns is None or UNKNOWN in (mine.boot, mine.pid_ns):
        return False  # this system does not say which boot or namespace we are in
    pid = theirs.pid
    if pid == mine.pid:
        return True  # our process id with another nonce: an earlier life of this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@functools.cache
def boot_id() -> str:
    """Return a short id of this boot of this machine (Linux), or "-" where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8] or UNKNOWN
    except OSError:
        return UNKNOWN


@functools.cache
def pid_namespace() -> str:
    """Return the identity of this process's PID namespace (Linux), or "-" where unknown.

    It is the inode number of ``/proc/self/ns/pid``, unique on the host while the
    namespace lives (``readlink`` shows it as ``pid:[4026531836]``).
    """
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return UNKNOWN


class Claimed(NamedTuple):
    """A row claimed for sending."""

    id: int
    event_id: str
    schedule_id: str
    app_user_id: str
    event_type: str
    scheduled_for: int
    data: str
    attempts: int
    expires_at: int


class Result(NamedTuple):
    """What happened to a claimed row, to be written by :meth:`Ledger.record`."""

    id: int
    status: Status  # pending (a retry or a hold), or a final status
    attempts: int  # attempts after this one (unchanged for a hold)
    next_attempt_at: int  # ms
    status_code: int | None
    error: str | None
    delivered_at: int | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """Row filters shared by ``deliveries`` and ``replay``."""

    status: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    since: int | None = None  # ms; rows scheduled at or after this


@dataclass(frozen=True, slots=True)
class Row:
    """A ledger row as operators see it."""

    event_id: str
    schedule_id: str
    app_user_id: str
    event_type: str
    scheduled_for: int
    status: str
    attempts: int
    next_attempt_at: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: int | None
    data: str


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """What the ledger says about the endpoint lately."""

    last_delivered_at: int | None  # ms
    last_error: str | None
    last_error_at: int | None  # ms


class PruneAt(NamedTuple):
    """Where a prune in steps has got: a table, and the key of the last row looked at."""

    table: Literal["deliveries", "fires"]
    after: tuple[Any, ...] | None  # None: from the table's start


PRUNE_START: Final = PruneAt("deliveries", None)


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One occurrence of a job as recorded in ``fires``."""

    schedule_id: str
    zone: str
    scheduled_for: int
    status: str
    reason: str | None
    users: int


# Whether a fire is the caller's to finish ("own"), joins one in progress or done ("shared",
# rows only), or must not happen ("none").
FireClaim = Literal["own", "shared", "none"]

HEARTBEAT_INTERVAL: Final = 5.0  # seconds between an instance's heartbeats
ALIVE_WITHIN: Final = 30.0  # seconds: an instance not seen for longer is not running


@dataclass(frozen=True, slots=True)
class Instance:
    """An instance as its heartbeat row tells it."""

    name: str
    host: str
    pid: int
    version: str
    started_at: int  # ms
    last_seen: int  # ms
    stopped_at: int | None  # ms
    paused: bool
    plan_sha256: str

    def alive(self, now: int) -> bool:
        """Tell whether the instance runs: not stopped, and seen within ALIVE_WITHIN."""
        return self.stopped_at is None and now - self.last_seen <= ALIVE_WITHIN * 1000


class Ledger:
    """Access to one ledger database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise LedgerError(f"{url!r} is not a database URL; write sqlite:///eventcron.db"
                              " or postgresql+psycopg://user@host/db.") from None
        self.dialect = parsed.get_backend_name()
        self._sql = _statements(self.dialect)
        self._sized: dict[tuple[str, int], str] = {}
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, parsed.database)
        elif self.dialect == "postgresql":
            try:
                self.engine = create_engine(url, pool_pre_ping=True, pool_size=4,
                                            max_overflow=4)
            except ImportError:
                raise LedgerError("a PostgreSQL ledger needs psycopg: pip install"
                                  " 'eventcron[postgres]'.") from None
        else:
            raise LedgerError(f"the ledger must be SQLite or PostgreSQL, not {self.dialect!r}.")

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Ledger:
        """Open a ledger and check its schema version; create it unless ``create=False``.

        Operator commands open with ``create=False``, so a mistyped URL is an error rather
        than a new empty ledger.
        """
        if not create:
            parsed = make_url(url)
            db = parsed.database or ""
            if (parsed.get_backend_name() == "sqlite" and db not in ("", ":memory:")
                    and not db.startswith("file:") and not Path(db).exists()):
                raise LedgerError(f"there is no ledger at {db}; is the --database URL (or"
                                  " the file's database setting) right?")
        ledger = cls(url)
        try:
            if not create and not ledger._has_schema():
                raise LedgerError(f"{display_url(url)} holds no eventcron ledger; is the"
                                  " --database URL right?")
            ledger.migrate()
        except SQLAlchemyError as e:
            ledger.close()
            raise LedgerError(f"cannot open the ledger {display_url(url)}: {_cause(e)}.",
                              temporary=_temporary(ledger.dialect, e)) from None
        except BaseException:
            ledger.close()
            raise
        return ledger

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        opts = {} if write else {"eventcron_read": True}
        with self.engine.connect().execution_options(**opts) as conn, conn.begin():
            yield conn

    # --- schema -------------------------------------------------------------------------

    def _has_schema(self) -> bool:
        with self._tx(write=False) as conn:
            return bool(inspect(conn).has_table(meta_table.name))

    def migrate(self) -> None:
        """Create the tables on first use; refuse a ledger from a newer eventcron."""
        with self._tx() as conn:
            if self.dialect == "postgresql":
                # Instances starting together would race to create the tables; the
                # transaction-scoped lock makes the others wait and then find them.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": MIGRATION_LOCK})
            metadata.create_all(conn)
            ix_fires_firing.create(conn, checkfirst=True)  # create_all skips existing tables
            found = conn.execute(select(meta_table.c.value).where(
                meta_table.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(insert(meta_table).values(key="schema_version",
                                                       value=str(SCHEMA_VERSION)))
                return
            version = int(found)
            if version == SCHEMA_VERSION:
                return  # nothing to write: a read-only ledger can still be read
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger {display_url(self.url)} has schema version {version}, newer than"
                    f" this eventcron understands ({SCHEMA_VERSION}); upgrade eventcron.")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(text(statement))
            conn.execute(update(meta_table).where(meta_table.c.key == "schema_version")
                         .values(value=str(SCHEMA_VERSION)))

    def schema_version(self) -> int:
        """Return the schema version stored in the ledger."""
        with self._tx(write=False) as conn:
            return int(conn.execute(select(meta_table.c.value).where(
                meta_table.c.key == "schema_version")).scalar_one())

    # --- firing -------------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        if self.dialect == "postgresql":
            return pg_dialect.insert(table).on_conflict_do_nothing()
        return sqlite_dialect.insert(table).on_conflict_do_nothing()

    def begin_fire(self, schedule_id: str, zone: str, scheduled_for: int, now: int) -> bool:
        """Record that an occurrence is being fired; False if it already was, or was skipped.

        True also for a fire in progress (one a crash interrupted, or another instance's):
        the unique key makes the second enqueue add only what is missing.
        """
        with self._tx() as conn:
            return self._begin_fire_in(conn, schedule_id, zone, scheduled_for, now) != "none"

    def begin_fire_by_hand(self, schedule_id: str, zone: str, scheduled_for: int,
                           now: int) -> bool:
        """Open a fire for ``eventcron fire``; return whether the caller must finish it.

        A skipped or new occurrence becomes the caller's to finish. One that is being fired
        (a running instance, or a crash's leftover) or was fired is joined: its rows are
        enqueued through the unique key, but its record is left to whoever owns it, so a
        crash of that owner is still noticed and completed at the next start.
        """
        with self._tx() as conn:
            claim = self._begin_fire_in(conn, schedule_id, zone, scheduled_for, now,
                                        by_hand=True)
        return claim == "own"

    def _begin_fire_in(self, conn: Connection, schedule_id: str, zone: str, scheduled_for: int,
                       now: int, *, by_hand: bool = False) -> FireClaim:
        inserted = conn.execute(self._insert(fires).values(
            schedule_id=schedule_id, zone=zone, scheduled_for=scheduled_for,
            status="firing", users=0, updated_at=now).returning(fires.c.status)).first()
        if inserted is not None:
            return "own"
        where = (fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                 fires.c.scheduled_for == scheduled_for)
        return self._take_fire(conn, where, now, by_hand=by_hand)

    @staticmethod
    def _take_fire(conn: Connection, where: tuple[Any, ...], now: int, *,
                   by_hand: bool = False) -> FireClaim:
        # The fire record exists: may this caller fire, and does the record become its own?
        status, reason = conn.execute(select(fires.c.status, fires.c.reason).where(
            *where)).one()
        # A skip for "passed before the schedule was loaded" is one instance's view: another
        # that had the schedule loaded in time fires the occurrence after all.
        if status == "skipped" and (by_hand or reason == PASSED_BEFORE_LOAD):
            conn.execute(update(fires).where(*where, fires.c.status == "skipped").values(
                status="firing", reason=None, updated_at=now))
            return "own"
        if status == "firing" or (by_hand and status == "fired"):
            return "shared"
        return "none"

    def skip_passed(self, schedule_id: str, zone: str, scheduled_for: int, now: int) -> bool:
        """Record an occurrence as skipped because it passed before its schedule was loaded.

        Returns False when the occurrence is already recorded (fired, firing or skipped).
        """
        with self._tx() as conn:
            # RETURNING, not rowcount: psycopg does not report a count for ON CONFLICT.
            inserted = conn.execute(self._insert(fires).values(
                schedule_id=schedule_id, zone=zone, scheduled_for=scheduled_for,
                status="skipped", reason=PASSED_BEFORE_LOAD, users=0, updated_at=now,
            ).returning(fires.c.scheduled_for)).first()
            return inserted is not None

    def enqueue(self, rows: Sequence[NewRow], now: int) -> int:
        """Insert delivery rows, ignoring occurrences already present; return rows added.

        The event id, status and bookkeeping are filled in here.
        """
        added = 0
        for start in range(0, len(rows), ENQUEUE_BATCH):
            with self._tx() as conn:
                added += self._enqueue_in(conn, rows[start:start + ENQUEUE_BATCH], now)
        return added

    def _enqueue_in(self, conn: Connection, chunk: Sequence[NewRow], now: int) -> int:
        """Insert rows within the caller's transaction; return how many were new."""
        added = 0
        derivers: dict[tuple[str, str, int], Callable[[str], str]] = {}

        def ids(row: NewRow) -> str:
            key = (row.schedule_id, row.event_type, row.scheduled_for)
            derive = derivers.get(key)
            if derive is None:
                derive = derivers[key] = event_ids(*key)
            return derive(row.app_user_id)

        if not chunk:
            return 0
        if self.dialect == "postgresql":
            # psycopg reports no rowcount for a batch; RETURNING lists the new rows
            # (SQLAlchemy sends the batch as multi-row VALUES statements).
            batch = [{**r._asdict(), "event_id": ids(r), "status": "pending", "attempts": 0,
                      "created_at": now, "updated_at": now} for r in chunk]
            stmt = self._insert(deliveries).returning(deliveries.c.id)
            return len(conn.execute(stmt, batch).all())
        # The hot path of a big fire: multi-row INSERTs of plain values, one statement (one
        # driver step) per few hundred rows; rowcount counts only rows inserted, not
        # conflicts skipped.
        for part in range(0, len(chunk), INSERT_CHUNK):
            rows = chunk[part:part + INSERT_CHUNK]
            params = tuple(v for r in rows for v in (ids(r), *r, now, now))
            added += int(conn.exec_driver_sql(self._insert_sql(len(rows)), params).rowcount
                         or 0)
        return added

    def fire_together(self,
                      batch: Sequence[tuple[str, str, str, str, int, Sequence[NewRow], int]],
                      now: int) -> list[int | None]:
        """Fire several occurrences atomically: record, enqueue, mark fired, advance jobs.

        Each item is ``(job, schedule_id, zone, fingerprint, scheduled_for, rows,
        watermark)``. Returns rows added per item, or None for one already fired. All or
        nothing: after a crash none of them is recorded, so catch-up fires them again.
        """
        result: list[int | None] = []
        with self._tx() as conn:
            conn.execute(self._insert(fires), [
                {"schedule_id": sid, "zone": zone, "scheduled_for": t, "status": "firing",
                 "users": 0, "updated_at": now} for _, sid, zone, _, t, _, _ in batch])
            for job, sid, zone, fingerprint, t, rows, watermark in batch:
                where = (fires.c.schedule_id == sid, fires.c.zone == zone,
                         fires.c.scheduled_for == t)
                if self._take_fire(conn, where, now) == "none":
                    result.append(None)
                    continue
                added = self._enqueue_in(conn, rows, now)
                conn.execute(update(fires).where(*where).values(
                    status="fired", users=added, updated_at=now))
                self._advance(conn, job, sid, fingerprint, watermark=watermark, now=now)
                result.append(added)
        return result

    def _advance(self, conn: Connection, job: str, schedule_id: str, fingerprint: str, *,
                 watermark: int, now: int) -> None:
        # Two instances may race here; the guard keeps the watermark monotonic.
        current = conn.execute(select(job_state.c.watermark).where(
            job_state.c.job == job)).scalar()
        if current is None:
            conn.execute(self._insert(job_state).values(
                job=job, schedule_id=schedule_id, fingerprint=fingerprint,
                watermark=watermark, updated_at=now))
        elif watermark > current:
            conn.execute(update(job_state).where(
                job_state.c.job == job, job_state.c.watermark < watermark).values(
                watermark=watermark, updated_at=now))

    def finish_fire(self, schedule_id: str, zone: str, scheduled_for: int, users: int,
                    now: int) -> None:
        """Mark an occurrence fired with the number of rows it enqueued."""
        with self._tx() as conn:
            conn.execute(update(fires).where(
                fires.c.schedule_id == schedule_id, fires.c.zone == zone,
                fires.c.scheduled_for == scheduled_for).values(
                status="fired", users=fires.c.users + users, updated_at=now))

    def record_skipped(self, schedule_id: str, zone: str, times: Iterable[int], reason: str,
                       now: int) -> None:
        """Record occurrences that will not be fired, with the reason."""
        values = [{"schedule_id": schedule_id, "zone": zone, "scheduled_for": t,
                   "status": "skipped", "reason": reason, "users": 0, "updated_at": now}
                  for t in times]
        if values:
            with self._tx() as conn:
                conn.execute(self._insert(fires), values)

    def abandon_fires(self, schedule_ids: Sequence[str], reason: str, now: int,
                      zone: str | None = None, scheduled_for: int | None = None) -> None:
        """Close unfinished fires that will never be completed (their schedule is gone)."""
        where = [fires.c.status == "firing", fires.c.schedule_id.in_(list(schedule_ids))]
        if zone is not None:
            where.append(fires.c.zone == zone)
        if scheduled_for is not None:
            where.append(fires.c.scheduled_for == scheduled_for)
        with self._tx() as conn:
            conn.execute(update(fires).where(*where).values(status="skipped", reason=reason,
                                                            updated_at=now))

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
        return [FireRecord(r.schedule_id, r.zone, r.scheduled_for, r.status, r.reason, r.users)
                for r in rows]

    def fires_of(self, schedule_id: str, limit: int = 100) -> list[FireRecord]:
        """Return a schedule's most recent fire records, newest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(fires).where(fires.c.schedule_id == schedule_id)
                                .order_by(fires.c.scheduled_for.desc()).limit(limit)).all()
        return [FireRecord(r.schedule_id, r.zone, r.scheduled_for, r.status, r.reason, r.users)
                for r in rows]

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

    # --- instances ----------------------------------------------------------------------

    def heartbeat(self, instance: Instance) -> None:
        """Write an instance's heartbeat row (inserted on its first beat)."""
        values = dataclasses.asdict(instance)
        values["paused"] = int(instance.paused)
        changing = {k: values[k] for k in ("last_seen", "stopped_at", "paused", "plan_sha256")}
        insert_ = (pg_dialect.insert if self.dialect == "postgresql" else sqlite_dialect.insert)
        with self._tx() as conn:
            conn.execute(insert_(instances).values(**values).on_conflict_do_update(
                index_elements=[instances.c.name], set_=changing))

    def instances(self) -> list[Instance]:
        """Return every instance that ever ran, the most recently seen first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(instances).order_by(
                instances.c.last_seen.desc())).all()
        return [Instance(r.name, r.host, r.pid, r.version, int(r.started_at),
                         int(r.last_seen), None if r.stopped_at is None else int(r.stopped_at),
                         bool(r.paused), r.plan_sha256) for r in rows]

    # --- dispatch -----------------------------------------------------------------------

    def claim(self, owner: str, now: int, limit: int, lease_ms: int) -> list[Claimed]:
        """Claim up to ``limit`` due rows for ``owner`` until ``now + lease_ms``."""
        if limit <= 0:
            return []
        with self._tx() as conn:
            if self.dialect == "postgresql":
                rows = conn.exec_driver_sql(self._sql["claim"],
                                            (owner, now + lease_ms, now, now, now, limit)).all()
            else:
                # Two statements of one step each, inside the writer's lock: RETURNING would
                # step once per row, and every step lets the busy event loop take the
                # interpreter back before this thread may continue.
                packed = conn.exec_driver_sql(_SQLITE_PICK, (now, now, now, limit)).scalar()
                rows = json.loads(packed or "[]")
                if rows:
                    conn.exec_driver_sql(_SQLITE_TAKE, (owner, now + lease_ms,
                                                        json.dumps([r[0] for r in rows])))
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
        # One statement per few hundred answers, not one per answer: this runs thousands
        # of times a second, and the database driver lets other threads run (and then
        # waits to get back in) on every statement step.
        with self._tx() as conn:
            for start in range(0, len(delivered), RECORD_CHUNK):
                chunk = delivered[start:start + RECORD_CHUNK]
                conn.exec_driver_sql(self._values_sql("delivered", len(chunk)),
                                     (now, *itertools.chain.from_iterable(chunk)))
            for start in range(0, len(others), RECORD_CHUNK):
                chunk = others[start:start + RECORD_CHUNK]
                conn.exec_driver_sql(self._values_sql("settled", len(chunk)),
                                     (now, *itertools.chain.from_iterable(chunk), owner))

    def _insert_sql(self, rows: int) -> str:
        key = ("insert", rows)
        sql = self._sized.get(key)
        if sql is None:
            one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)"
            sql = _SQLITE_ENQUEUE.format(values=", ".join([one] * rows))
            self._sized[key] = sql
        return sql

    def _values_sql(self, kind: str, rows: int) -> str:
        key = (kind, rows)
        sql = self._sized.get(key)
        if sql is None:
            template, width, first = _RECORD[kind]
            tail = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * (rows - 1))
            values = first + (", " + tail if tail else "")
            sql = template.format(values=values)
            if self.dialect == "postgresql":
                sql = sql.replace("?", "%s")
            self._sized[key] = sql
        return sql

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

    # --- operators ----------------------------------------------------------------------

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

    def health(self) -> EndpointHealth:
        """Return the latest delivery time and the latest error the endpoint caused."""
        with self._tx(write=False) as conn:
            delivered = conn.execute(select(func.max(deliveries.c.delivered_at))).scalar()
            error = conn.execute(
                select(deliveries.c.last_error, deliveries.c.updated_at)
                .where(deliveries.c.status.in_(("pending", "failed", "expired")),
                       deliveries.c.last_error.is_not(None))
                .order_by(deliveries.c.updated_at.desc()).limit(1)).first()
        return EndpointHealth(int(delivered) if delivered is not None else None,
                      error.last_error if error else None,
                      int(error.updated_at) if error else None)

    def _where(self, filters: Filters) -> Any:
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
               dry_run: bool = False) -> int:
        """Put failed or expired rows matching ``filters`` back to pending; return how many.

        Attempts restart at zero and the expiry restarts from now, or the rows would
        expire again at once.
        """
        statuses = tuple(s for s in (filters.status or REPLAYABLE) if s in REPLAYABLE)
        where = and_(self._where(Filters(statuses, filters.schedule, filters.user,
                                         filters.since)),
                     deliveries.c.status.in_(statuses))
        with self._tx(write=not dry_run) as conn:
            if dry_run:
                return int(conn.execute(select(func.count()).select_from(deliveries)
                                        .where(where)).scalar_one())
            result = conn.execute(update(deliveries).where(where).values(
                status="pending", attempts=0, next_attempt_at=now,
                expires_at=now + expires_after_ms, claimed_by=None, claim_until=None,
                last_error=None, updated_at=now))
        return int(result.rowcount or 0)

    def prune(self, before: int, refire_horizon: int, *, batch: int = PRUNE_BATCH) -> int:
        """Delete final rows last changed before ``before`` (ms); return how many.

        A deleted key could let its occurrence be enqueued and sent again, so rows are
        kept while their occurrence could still be fired: when it is newer than
        ``refire_horizon`` (now minus catch_up: catch-up fires nothing older), or when its
        fire was interrupted (a restart completes those, whatever their age). Pending rows
        are never deleted. Fire records follow the same rule.

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
                # Last, the heartbeat rows of instances gone longer than the retention: a
                # handful of rows, one per process that ever started.
                conn.execute(delete(instances).where(instances.c.last_seen < before))
        return 0, None if end is None else PruneAt("fires", tuple(end))

    def check_writable(self, now: int) -> None:
        """Probe a write (as :meth:`probe`); raise :class:`LedgerError`, a sentence, if it fails.

        ``run`` calls this at start: a ledger it can read but not write is a configuration
        error, not something to find at the first fire.
        """
        try:
            self.probe(now)
        except SQLAlchemyError as e:
            raise LedgerError(f"cannot write to the ledger {display_url(self.url)}: {_cause(e)}.",
                              temporary=_temporary(self.dialect, e)) from None

    def probe(self, now: int) -> None:
        """Write a heartbeat row: raises when the ledger cannot take writes."""
        with self._tx() as conn:
            conn.execute(self._insert(meta_table).values(key="heartbeat", value=str(now)))
            conn.execute(update(meta_table).where(meta_table.c.key == "heartbeat")
                         .values(value=str(now)))


# The hot-path statements, as plain SQL: the same text on both databases but for the lock
# clause PostgreSQL needs, and the placeholder style of each driver.
_CLAIM: Final = """
UPDATE deliveries SET claimed_by = ?, claim_until = ?
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= ? AND expires_at > ?
      AND (claim_until IS NULL OR claim_until < ?)
    ORDER BY next_attempt_at, id
    LIMIT ?{lock})
RETURNING id, event_id, schedule_id, app_user_id, event_type, scheduled_for, data, attempts,
          expires_at"""
# Outcomes are written as one UPDATE joined to a VALUES list; the first row carries the
# types (PostgreSQL cannot infer them from a column of NULLs).
_RECORD: Final = {
    # last_error is left as it was: a row delivered after a failed attempt keeps why it failed.
    "delivered": ("""
UPDATE deliveries SET status = 'delivered', attempts = v.column2, last_status_code = v.column3,
    delivered_at = v.column4, claimed_by = NULL, claim_until = NULL, updated_at = ?
FROM (VALUES {values}) AS v
WHERE deliveries.id = v.column1 AND deliveries.status = 'pending'""", 4,
                  "(CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS INTEGER),"
                  " CAST(? AS BIGINT))"),
    "settled": ("""
UPDATE deliveries SET status = v.column2, attempts = v.column3, next_attempt_at = v.column4,
    last_status_code = v.column5, last_error = v.column6, claimed_by = NULL,
    claim_until = NULL, updated_at = ?
FROM (VALUES {values}) AS v
WHERE deliveries.id = v.column1 AND deliveries.status = 'pending'
    AND deliveries.claimed_by = ?""", 6,
                "(CAST(? AS BIGINT), CAST(? AS VARCHAR(10)), CAST(? AS INTEGER),"
                " CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS TEXT))"),
}
_SQLITE_PICK: Final = """
SELECT json_group_array(json_array(id, event_id, schedule_id, app_user_id, event_type,
                                   scheduled_for, data, attempts, expires_at))
FROM (SELECT * FROM deliveries
      WHERE status = 'pending' AND next_attempt_at <= ? AND expires_at > ?
        AND (claim_until IS NULL OR claim_until < ?)
      ORDER BY next_attempt_at, id
      LIMIT ?)"""
_SQLITE_TAKE: Final = """
UPDATE deliveries SET claimed_by = ?, claim_until = ?
WHERE id IN (SELECT value FROM json_each(?))"""
_SQLITE_ENQUEUE: Final = """
INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type, scheduled_for, data,
    next_attempt_at, expires_at, created_at, updated_at, status, attempts)
VALUES {values}
ON CONFLICT DO NOTHING"""


def _statements(dialect: str) -> dict[str, str]:
    lock = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    sql = {"claim": _CLAIM.format(lock=lock)}
    if dialect == "postgresql":  # psycopg's placeholders are %s
        sql = {k: v.replace("?", "%s") for k, v in sql.items()}
    return sql


MIN_SQLITE: Final = (3, 35, 0)  # UPDATE ... FROM (3.33), JSON functions, RETURNING (3.35)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise LedgerError(f"the ledger needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer;"
                          f" this Python has {sqlite3.sqlite_version}.")
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        if not path.parent.is_dir():
            cause = (f"{path.parent} is not a folder" if path.parent.exists() else
                     f"the folder {path.parent} does not exist")
            raise LedgerError(f"cannot open the ledger {path}: {cause}.")
        if path.is_dir():
            raise LedgerError(f"cannot open the ledger {path}: it is a folder, not a file.")
        if not path.exists():
            # Create the file private (0600) before SQLite does with the umask's mode.
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as e:
                raise LedgerError(f"cannot create the ledger {path}: {e.strerror}.") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE below is what runs.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a process crash (kill -9); a power
        # cut may roll back the last ones, which the fire/claim records make safe to redo.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades to a writer
        # can fail with "database is locked" at once, without waiting out busy_timeout.
        read = conn.get_execution_options().get("eventcron_read", False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def display_url(url: str) -> str:
    """Return a database URL fit to show: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _temporary(dialect: str, e: SQLAlchemyError) -> bool:
    """Tell whether trying again later may work.

    It may for a PostgreSQL server that is unreachable, or a busy SQLite file; not for an
    SQLite file that cannot be opened or written.
    """
    if not isinstance(e, OperationalError):
        return False
    orig = getattr(e, "orig", None)
    if dialect == "sqlite":
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        return "locked" in _cause(e) or "busy" in _cause(e)
    # The server answered that the login or the database is wrong: waiting will not help.
    # psycopg gives no SQLSTATE for a refused connection; the server's sentence says it.
    state = getattr(orig, "sqlstate", None) or ""
    refused = re.search(r"password authentication failed|role .* does not exist|database .*"
                        r" does not exist|no pg_hba.conf entry", str(orig))
    return not (state.startswith("28") or state == "3D000" or refused)


def _cause(e: SQLAlchemyError) -> str:
    return first_line(e).rstrip(".")  # the caller's sentence ends it


class LedgerThread:
    """Runs ledger calls on one dedicated thread, so the event loop never blocks on disk.

    One thread also serializes this process's writes, which SQLite wants anyway.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` on the ledger thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def prune(self, before: int, refire_horizon: int, *, batch: int = PRUNE_BATCH,
                    step_seconds: float | None = PRUNE_STEP_SECONDS) -> int:
        """Run :meth:`Ledger.prune` one step per call; return the delivery rows deleted.

        The thread takes calls in turn, so claims, records and health probes queued during
        a step run before the next one: none waits for more than a step. Steps start at
        ``batch`` rows, then double or halve (within PRUNE_BATCHES) to take about
        ``step_seconds``, whatever the disk and the rows' layout; None keeps ``batch``.
        """

        def step(at: PruneAt, size: int) -> tuple[int, PruneAt | None, float]:
            began = monotonic()
            n, following = self.ledger.prune_step(before, refire_horizon, at, batch=size)
            return n, following, monotonic() - began

        total = 0
        at: PruneAt | None = PRUNE_START
        while at is not None:
            n, at, took = await self.call(step, at, batch)
            total += n
            if step_seconds is not None:
                least, most = PRUNE_BATCHES
                if took < step_seconds / 2:
                    batch = min(most, batch * 2)
                elif took > step_seconds:
                    batch = max(least, batch // 2)
        return total

    def close(self) -> None:
        """Finish queued calls, stop the thread and close the ledger."""
        self._executor.shutdown(wait=True)
        self.ledger.close()
