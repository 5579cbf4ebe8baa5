"""The ledger's hand-written SQL, by name: the hot-path statements the driver runs as written.

Each text is written once, with ``{p}`` where a parameter goes and ``{values}`` where a
VALUES list goes; ``dialect.py`` renders them once per ledger (``{p}`` becomes ``?`` for
sqlite3, ``%s`` for psycopg) and caches the sized ones. The rest of the ledger's SQL is
built with SQLAlchemy beside the method that runs it. Texts only: nothing here runs.

Hazard: the texts go through ``str.format``, so a literal brace must be written doubled.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

# --- claim: PostgreSQL takes due rows in one statement; SQLite in two (see dialect.py) ---

POSTGRES_CLAIM: Final = """
UPDATE deliveries SET claimed_by = {p}, claim_until = {p}
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= {p} AND expires_at > {p}
      AND (claim_until IS NULL OR claim_until < {p})
    ORDER BY next_attempt_at, id
    LIMIT {p} FOR UPDATE SKIP LOCKED)
RETURNING id, event_id, schedule_id, app_user_id, event_type, scheduled_for, data, attempts,
          expires_at"""

# The due rows as one JSON array (one statement step, whatever the count).
SQLITE_PICK: Final = """
SELECT json_group_array(json_array(id, event_id, schedule_id, app_user_id, event_type,
                                   scheduled_for, data, attempts, expires_at))
FROM (SELECT * FROM deliveries
      WHERE status = 'pending' AND next_attempt_at <= {p} AND expires_at > {p}
        AND (claim_until IS NULL OR claim_until < {p})
      ORDER BY next_attempt_at, id
      LIMIT {p})"""

# The picked ids, passed as one JSON array.
SQLITE_TAKE: Final = """
UPDATE deliveries SET claimed_by = {p}, claim_until = {p}
WHERE id IN (SELECT value FROM json_each({p}))"""

# --- enqueue: SQLite's multi-row INSERT of plain values ----------------------------------

SQLITE_ENQUEUE: Final = """
INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type, scheduled_for, data,
    next_attempt_at, expires_at, created_at, updated_at, status, attempts)
VALUES {values}
ON CONFLICT DO NOTHING"""
SQLITE_ENQUEUE_ROW: Final = "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 'pending', 0)"

# --- record: outcomes as one UPDATE joined to a VALUES list ------------------------------

Outcome = Literal["delivered", "settled"]


class ValuesUpdate(NamedTuple):
    """An UPDATE joined to a VALUES list: its text, the row width, and its first row.

    The first row carries the types (PostgreSQL cannot infer them from a column of NULLs);
    the other rows are plain placeholders.
    """

    text: str
    width: int
    first_row: str


RECORD: Final[dict[Outcome, ValuesUpdate]] = {
    # last_error is left as it was: a row delivered after a failed attempt keeps why it failed.
    "delivered": ValuesUpdate("""
UPDATE deliveries SET status = 'delivered', attempts = v.column2, last_status_code = v.column3,
    delivered_at = v.column4, claimed_by = NULL, claim_until = NULL, updated_at = {p}
FROM (VALUES {values}) AS v
WHERE deliveries.id = v.column1 AND deliveries.status = 'pending'""", 4,
        "(CAST({p} AS BIGINT), CAST({p} AS INTEGER), CAST({p} AS INTEGER),"
        " CAST({p} AS BIGINT))"),
    "settled": ValuesUpdate("""
UPDATE deliveries SET status = v.column2, attempts = v.column3, next_attempt_at = v.column4,
    last_status_code = v.column5, last_error = v.column6, claimed_by = NULL,
    claim_until = NULL, updated_at = {p}
FROM (VALUES {values}) AS v
WHERE deliveries.id = v.column1 AND deliveries.status = 'pending'
    AND deliveries.claimed_by = {p}""", 6,
        "(CAST({p} AS BIGINT), CAST({p} AS VARCHAR(10)), CAST({p} AS INTEGER),"
        " CAST({p} AS BIGINT), CAST({p} AS INTEGER), CAST({p} AS TEXT))"),
}
