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
          expires_at, zone"""

# The due rows as one JSON array (one statement step, whatever the count).
SQLITE_PICK: Final = """
SELECT json_group_array(json_array(id, event_id, schedule_id, app_user_id, event_type,
                                   scheduled_for, data, attempts, expires_at, zone))
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

# One statement per shape of a chunk, so a plain fire binds no more than it stores: "plain"
# rows are pending with no zone; "zoned" ones (the campaign rules apply) carry the
# recipient's zone; "ruled" ones include rows the rules inserted final, with their status
# and reason (in last_error). Binding costs: a parameter more a row is ~10% more time.
SQLITE_ENQUEUE: Final = """
INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type, scheduled_for, data,
    next_attempt_at, expires_at, {columns}, attempts)
VALUES {values}
ON CONFLICT DO NOTHING"""
EnqueueShape = Literal["plain", "zoned", "ruled"]
SQLITE_ENQUEUE_SHAPES: Final[dict[EnqueueShape, tuple[str, str]]] = {
    # shape: (the columns after expires_at, one row of VALUES)
    "plain": ("created_at, updated_at, status",
              "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 'pending', 0)"),
    "zoned": ("zone, created_at, updated_at, status",
              "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 'pending', 0)"),
    "ruled": ("zone, status, last_error, created_at, updated_at",
              "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 0)"),
}

# The rows an INSERT just added, as one JSON array: ids above the largest before it. Only the
# writer holding BEGIN IMMEDIATE inserts, and SQLite gives a new row the largest id plus one.
SQLITE_LAST_ID: Final = "SELECT coalesce(max(id), 0) FROM deliveries"
SQLITE_ADDED: Final = """
SELECT json_group_array(json_array(id, event_id)) FROM deliveries WHERE id > {p}"""

# --- frequency caps: slots of (user, cap, window), taken in the enqueue's transaction -----
# Each statement takes its rows as one JSON text (SQLite) or one array per column
# (PostgreSQL): one statement whatever the count, and no statement to render per size.
# "window" is quoted: a reserved word in both databases.

SQLITE_SLOTS_HELD: Final = """
SELECT json_group_array(json_array(app_user_id, cap, "window", slot, delivery_id, schedule_id,
                                   scheduled_for))
FROM cap_slots
WHERE (app_user_id, cap, "window") IN (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
           json_extract(value, '$[2]')
    FROM json_each({p}))"""
POSTGRES_SLOTS_HELD: Final = """
SELECT app_user_id, cap, "window", slot, delivery_id, schedule_id, scheduled_for
FROM cap_slots
WHERE (app_user_id, cap, "window") IN (
    SELECT * FROM unnest({p}::text[], {p}::text[], {p}::bigint[]))"""

# Rows come sorted by (user, cap, window, slot): instances taking slots at once lock the keys
# in one order, so they wait for each other rather than deadlock. The WHERE is SQLite's:
# without it, ON CONFLICT would be read as a join's ON.
SQLITE_TAKE_SLOTS: Final = """
INSERT INTO cap_slots (app_user_id, cap, "window", slot, until, delivery_id, schedule_id,
                       scheduled_for, taken_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), json_extract(value, '$[7]'), {p}
FROM json_each({p}) WHERE true
ON CONFLICT DO NOTHING"""
POSTGRES_TAKE_SLOTS: Final = """
INSERT INTO cap_slots (app_user_id, cap, "window", slot, until, delivery_id, schedule_id,
                       scheduled_for, taken_at)
SELECT u, c, w, s, t, d, sid, sf, {p}
FROM unnest({p}::text[], {p}::text[], {p}::bigint[], {p}::integer[], {p}::bigint[],
            {p}::bigint[], {p}::text[], {p}::bigint[]) AS v(u, c, w, s, t, d, sid, sf)
ON CONFLICT DO NOTHING
RETURNING delivery_id"""

# --- suppression: rows set suppressed, each with its reason --------------------------------

SQLITE_SUPPRESS_ROWS: Final = """
UPDATE deliveries SET status = 'suppressed', last_error = v.why, claimed_by = NULL,
    claim_until = NULL, updated_at = {p}
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS why
      FROM json_each({p})) AS v
WHERE deliveries.id = v.id AND deliveries.status = 'pending'"""
POSTGRES_SUPPRESS_ROWS: Final = """
UPDATE deliveries SET status = 'suppressed', last_error = v.why, claimed_by = NULL,
    claim_until = NULL, updated_at = {p}
FROM unnest({p}::bigint[], {p}::text[]) AS v(id, why)
WHERE deliveries.id = v.id AND deliveries.status = 'pending'"""

# Opt-outs: the pending rows of a list of users (read without the writer's lock), then those
# ids set suppressed in short transactions, unless a live claim holds them by then.
SQLITE_PENDING_OF: Final = """
SELECT json_group_array(id) FROM deliveries
WHERE status = 'pending' AND app_user_id IN (SELECT value FROM json_each({p}))"""
POSTGRES_PENDING_OF: Final = """
SELECT deliveries.id FROM deliveries
JOIN (SELECT DISTINCT unnest({p}::text[]) AS u) AS users ON deliveries.app_user_id = users.u
WHERE deliveries.status = 'pending'"""
SQLITE_SUPPRESS_IDS: Final = """
UPDATE deliveries SET status = 'suppressed', last_error = {p}, claimed_by = NULL,
    claim_until = NULL, updated_at = {p}
WHERE id IN (SELECT value FROM json_each({p})) AND status = 'pending'
    AND (claim_until IS NULL OR claim_until < {p})"""
POSTGRES_SUPPRESS_IDS: Final = """
UPDATE deliveries SET status = 'suppressed', last_error = {p}, claimed_by = NULL,
    claim_until = NULL, updated_at = {p}
WHERE id = ANY({p}::bigint[]) AND status = 'pending'
    AND (claim_until IS NULL OR claim_until < {p})"""

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
