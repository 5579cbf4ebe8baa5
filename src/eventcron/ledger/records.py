"""The ledger's value types, its error, and the event id derived from an occurrence key.

Plain data only: this module touches no database and no operating system.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy.exc import SQLAlchemyError

from eventcron.states import SEND_SCHEDULE, Status

EVENT_NAMESPACE: Final = uuid.UUID("6f1b8f1e-3c1a-5f0e-9d43-4a7e0c5b2d11")  # UUIDv5 namespace
_NAMESPACE_BYTES: Final = EVENT_NAMESPACE.bytes

PASSED_BEFORE_LOAD: Final = "passed before the schedule was loaded"  # a skip's reason

# The schedule id of the rows and fire records of `eventcron send`: one no schedule file can
# use (config/schedules.py refuses it), so the plan never retires them and the dispatcher
# never sends them. Their fire records are in UTC.
SEND_ZONE: Final = "UTC"

HEARTBEAT_INTERVAL: Final = 5.0  # seconds between an instance's heartbeats
ALIVE_WITHIN: Final = 30.0  # seconds: an instance not seen for longer is not running
# What a ledger call raises when the database or the disk fails for now (locked, gone, full):
# callers that can wait retry or report it, never crash on it.
TRANSIENT: Final = (SQLAlchemyError, OSError)


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


def send_event_id(app_user_id: str, event_type: str, at: int, data: Mapping[str, Any]) -> str:
    """Derive the event id of an ``eventcron send``: a UUIDv5 of its content and time (ms).

    The name hashed is ``-␟event_type␟at␟app_user_id␟data`` (␟ = U+001F), ``data`` as
    compact JSON with sorted keys: the same event sent at the same millisecond has the same
    id, whatever the order of its keys; any other difference gives another id.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    name = f"{SEND_SCHEDULE}\x1f{event_type}\x1f{at}\x1f{app_user_id}\x1f{canonical}"
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


class NewRow(NamedTuple):
    """A row to enqueue: one occurrence for one user."""

    schedule_id: str
    app_user_id: str
    event_type: str
    scheduled_for: int  # ms, nominal
    data: str  # rendered JSON object
    next_attempt_at: int  # ms: nominal plus jitter, moved past quiet hours
    expires_at: int  # ms
    zone: str | None = None  # the recipient's zone (quiet hours of retries are kept in it)
    # pending; or a final state the campaign rules decided at fire time (suppressed by an
    # opt-out or a per-user skip, expired because quiet hours outlast it), with the reason
    status: Status = "pending"
    reason: str | None = None
    cap: CapSlot | None = None  # the cap window the row counts in; None: exempt or no cap


class Added(NamedTuple):
    """What an enqueue did: rows inserted (suppressed ones too), and the cap's share.

    ``capped``: how many of them the frequency cap suppressed as they were inserted.
    """

    rows: int
    capped: int


class CapSlot(NamedTuple):
    """The frequency-cap window a new row must find room in (``limits.per_user``).

    The ledger takes one of ``limit`` slots of (user, ``name``, ``window``) for the row in
    the transaction that inserts it, with a unique key, so no two instances can both take
    the last one; a row that finds none left is inserted ``suppressed``.
    """

    # The window's kind, "h", "day" or "week": the slots' key, so a reload from 3/day to
    # 1/day still sees the three slots taken today (a cap's count is not part of it).
    name: str
    limit: int
    window: int  # ms: the window's start (the recipient's local hour, day or week)
    until: int  # ms: the window's end (slots are pruned after it)
    label: str  # the window for messages: "2026-12-07 (Europe/Berlin)"


def event_ids_of(rows: Sequence[NewRow]) -> list[str]:
    """Return the event id of each row, hashing each occurrence's prefix once."""
    derivers: dict[tuple[str, str, int], Callable[[str], str]] = {}
    out: list[str] = []
    for row in rows:
        key = (row.schedule_id, row.event_type, row.scheduled_for)
        derive = derivers.get(key)
        if derive is None:
            derive = derivers[key] = event_ids(*key)
        out.append(derive(row.app_user_id))
    return out


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
    zone: str | None = None  # the recipient's zone (None: a row from before it was kept)


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

    table: Literal["deliveries", "fires", "cap_slots"]
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
    instance: str | None = None  # who last fired or skipped it (None: an older eventcron)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One occurrence of a job as ``eventcron history`` shows it: its fire record and rows.

    ``counts`` and the delivery times are of every row of (schedule, nominal time): rows do
    not record their zone, so the zones of a ``timezone: user`` schedule that fire at one
    UTC instant (Berlin and Paris at 09:00) share them, while ``rows`` is each zone's own.
    """

    schedule_id: str
    zone: str
    scheduled_for: int  # ms, nominal
    status: str  # fired | skipped | firing (in progress, or cut short by a crash)
    reason: str | None
    instance: str | None
    rows: int  # rows its fire created
    counts: dict[str, int]  # rows of the occurrence by state, every state present
    first_delivered_at: int | None  # ms
    last_delivered_at: int | None  # ms


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
