"""The ledger's tables, its schema version, and the migrations between versions.

It touches the database only through :func:`migrate`, on a connection the caller opened
(and locked, where the database needs it: see ``dialect.py``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
    update,
)

from eventcron.ledger.records import LedgerError

SCHEMA_VERSION: Final = 1  # bump with a migration in MIGRATIONS; never edit a released table

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
    # The recipient's zone, where the campaign rules keep quiet hours of its retries. Added by
    # migrate() to ledgers created without it; older versions leave it NULL.
    Column("zone", Text),
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
    # Who last fired or skipped it: a claim owner name, or `eventcron fire`'s identity. Added
    # by migrate() to ledgers created without it; older versions leave it NULL.
    Column("instance", Text),
)
# Occurrences newest first, for `eventcron history` (the primary key starts with the
# schedule). An index only, added by migrate() like ix_fires_firing.
ix_fires_time = Index("ix_fires_time", fires.c.scheduled_for)
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

# The audit log of plans: one row per plan an instance applied (at start or reload) or
# refused (an invalid reload). A new table: create_all adds it to older ledgers.
plans = Table(
    "plans", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),  # ms
    Column("instance", Text, nullable=False),
    Column("file", Text, nullable=False),
    Column("sha256", Text, nullable=False),  # of the file's bytes
    Column("outcome", String(10), nullable=False),  # applied | refused
    Column("problems", Integer, nullable=False, default=0),  # refused: how many
    Column("content", Text),  # applied: the file as applied, for `eventcron diff`
    Column("schedules", Text),  # applied: JSON summary of each schedule, to compare with
    Column("change", Text),  # applied: JSON, what changed against the previous plan
)
Index("ix_plans_at", plans.c.at)

# Frequency caps (limits.per_user): one row per slot a row took, unique per (user, cap,
# window, slot number 0..limit-1), so instances inserting at once can never take more than
# the limit of a user's window between them. A new table: create_all adds it to older ledgers.
cap_slots = Table(
    "cap_slots", metadata,
    Column("app_user_id", Text, primary_key=True),
    Column("cap", String(32), primary_key=True),  # as written: "1/day"
    Column("window", BigInteger, primary_key=True, quote=True),  # ms: the window's start
    Column("slot", Integer, primary_key=True, autoincrement=False),  # 0..limit-1
    Column("until", BigInteger, nullable=False),  # ms: the window's end; pruned after it
    Column("delivery_id", BigInteger, nullable=False),  # the row holding the slot
    Column("schedule_id", Text, nullable=False),  # and its occurrence, for the reason of
    Column("scheduled_for", BigInteger, nullable=False),  # the rows that find no slot left
    Column("taken_at", BigInteger, nullable=False),  # ms
)
Index("ix_cap_slots_until", cap_slots.c.until)

# version -> statements taking a ledger from version-1 to version. Empty until a release
# changes the schema; each step runs in one transaction.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}


def migrate(conn: Connection, shown_url: str) -> None:
    """Create the tables on first use, or migrate them; refuse a ledger from a newer eventcron.

    Runs in the caller's transaction. ``shown_url`` names the ledger in the error.
    """
    metadata.create_all(conn)
    ix_fires_firing.create(conn, checkfirst=True)  # create_all skips existing tables
    ix_fires_time.create(conn, checkfirst=True)
    _add_column(conn, fires.c.instance)
    _add_column(conn, deliveries.c.zone)
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
            f"the ledger {shown_url} has schema version {version}, newer than"
            f" this eventcron understands ({SCHEMA_VERSION}); upgrade eventcron.")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            conn.execute(text(statement))
    conn.execute(update(meta_table).where(meta_table.c.key == "schema_version")
                 .values(value=str(SCHEMA_VERSION)))


def _add_column(conn: Connection, column: Column[Any]) -> None:
    """Add a nullable column that a table created by an earlier version lacks.

    A nullable column with no default: older versions, which never name it, keep reading
    and writing the table as before (their rows leave it NULL), so no version bump.
    """
    table = column.table.name
    if any(c["name"] == column.name for c in inspect(conn).get_columns(table)):
        return
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column.name} {kind}"))
