"""The ledger: every occurrence for every user, one row each, and every query on it.

The unique key (schedule, scheduled_for, app_user_id, event_type) makes enqueueing
idempotent: a fire repeated after a crash, or fired by two instances, yields one row.
Rows are claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serializes
writers with ``BEGIN IMMEDIATE``), so any number of processes can share a ledger and the
claims of one that died simply expire.

All times are integers: milliseconds since the Unix epoch, UTC. Methods are synchronous;
the daemon runs them on a worker thread so the event loop never waits on the disk.

This package only re-exports the public names of its modules:

- ``identity``: who holds a claim (:class:`Owner`), and whether it died;
- ``records``: the value types, :class:`LedgerError`, and the event id;
- ``schema``: tables, schema version, migrations;
- ``dialect``: every difference between SQLite and PostgreSQL;
- ``queries``: the hand-written hot-path SQL, by name;
- ``caps``: the frequency-cap slots a new row takes in its enqueue's transaction;
- ``base``, ``occurrences``, ``queue``, ``operators``, ``retention``, ``history``,
  ``sends``: the parts of :class:`Ledger`, which ``database`` puts together;
- ``thread``: :class:`LedgerThread`.
"""

from __future__ import annotations

from eventcron.ledger.base import RECORD_CHUNK
from eventcron.ledger.database import Ledger
from eventcron.ledger.dialect import (
    BUSY_TIMEOUT_MS,
    INSERT_CHUNK,
    MIGRATION_LOCK,
    MIN_SQLITE,
    display_url,
    password_of,
)
from eventcron.ledger.identity import (
    UNKNOWN,
    Owner,
    boot_id,
    instance_name,
    owner_is_dead,
    pid_namespace,
)
from eventcron.ledger.occurrences import FireClaim
from eventcron.ledger.plans import PlanRecord
from eventcron.ledger.queue import ENQUEUE_BATCH
from eventcron.ledger.records import (
    ALIVE_WITHIN,
    EVENT_NAMESPACE,
    HEARTBEAT_INTERVAL,
    PASSED_BEFORE_LOAD,
    PRUNE_START,
    SEND_ZONE,
    TRANSIENT,
    Added,
    CapSlot,
    Claimed,
    EndpointHealth,
    Filters,
    FireRecord,
    HistoryEntry,
    Instance,
    LedgerError,
    NewRow,
    PruneAt,
    Result,
    Row,
    event_id,
    event_ids,
    send_event_id,
)
from eventcron.ledger.retention import PRUNE_BATCH, PRUNE_BATCHES, PRUNE_STEP_SECONDS
from eventcron.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    cap_slots,
    deliveries,
    fires,
    instances,
    ix_fires_firing,
    ix_fires_time,
    job_state,
    meta_table,
    metadata,
)
from eventcron.ledger.sends import UNANSWERED
from eventcron.ledger.thread import LedgerThread
from eventcron.states import SEND_SCHEDULE

__all__ = [
    "ALIVE_WITHIN",
    "BUSY_TIMEOUT_MS",
    "ENQUEUE_BATCH",
    "EVENT_NAMESPACE",
    "HEARTBEAT_INTERVAL",
    "INSERT_CHUNK",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "MIN_SQLITE",
    "PASSED_BEFORE_LOAD",
    "PRUNE_BATCH",
    "PRUNE_BATCHES",
    "PRUNE_START",
    "PRUNE_STEP_SECONDS",
    "RECORD_CHUNK",
    "SCHEMA_VERSION",
    "SEND_SCHEDULE",
    "SEND_ZONE",
    "TRANSIENT",
    "UNANSWERED",
    "UNKNOWN",
    "Added",
    "CapSlot",
    "Claimed",
    "EndpointHealth",
    "Filters",
    "FireClaim",
    "FireRecord",
    "HistoryEntry",
    "Instance",
    "Ledger",
    "LedgerError",
    "LedgerThread",
    "NewRow",
    "Owner",
    "PlanRecord",
    "PruneAt",
    "Result",
    "Row",
    "boot_id",
    "cap_slots",
    "deliveries",
    "display_url",
    "event_id",
    "event_ids",
    "fires",
    "instance_name",
    "instances",
    "ix_fires_firing",
    "ix_fires_time",
    "job_state",
    "meta_table",
    "metadata",
    "owner_is_dead",
    "password_of",
    "pid_namespace",
    "send_event_id",
]
