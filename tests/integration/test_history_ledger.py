"""The history query and the `instance` column on real databases: an SQLite file, PostgreSQL.

The contract tests of ``tests/unit/test_history_ledger.py`` run here again with the
``ledger`` fixture overridden; then what is specific to real databases: the column added
to a ledger created without it (which older versions keep using), and the query plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)

from eventcron.ledger import Ledger
from tests.unit.test_history_ledger import (
    ME,
    T0,
    fired,
    statements,
    test_a_record_written_without_an_instance_shows_none,
    test_a_skipped_fire_shows_what_became_of_rows_it_had_enqueued,
    test_every_writer_of_a_fire_record_records_who_it_is,
    test_filters_by_schedule_and_time_and_keeps_the_newest,
    test_latest_occurrence_of_each_schedule_fired_or_skipped,
    test_occurrences_come_newest_first_with_their_rows_by_state,
    test_one_statement_whatever_the_number_of_occurrences,
    test_zones_sharing_an_instant_share_its_counts_but_not_their_rows,
)

__all__ = [  # collected here too, on each real database; `statements` is their fixture
    "statements",
    "test_a_record_written_without_an_instance_shows_none",
    "test_a_skipped_fire_shows_what_became_of_rows_it_had_enqueued",
    "test_every_writer_of_a_fire_record_records_who_it_is",
    "test_filters_by_schedule_and_time_and_keeps_the_newest",
    "test_latest_occurrence_of_each_schedule_fired_or_skipped",
    "test_occurrences_come_newest_first_with_their_rows_by_state",
    "test_one_statement_whatever_the_number_of_occurrences",
    "test_zones_sharing_an_instant_share_its_counts_but_not_their_rows",
]

# The fires table as eventcron wrote it before the `instance` column: what older versions
# still read and write once a newer one has added the column.
_OLD = MetaData()
OLD_FIRES = Table(
    "fires", _OLD,
    Column("schedule_id", Text, primary_key=True),
    Column("zone", Text, primary_key=True),
    Column("scheduled_for", BigInteger, primary_key=True),
    Column("status", String(10), nullable=False),
    Column("reason", Text),
    Column("users", Integer, nullable=False, default=0),
    Column("updated_at", BigInteger, nullable=False),
)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """An open, empty ledger on each real database (overrides the unit tests' one)."""
    opened = Ledger.open(ledger_url)
    yield opened
    opened.close()


def as_before_the_column(url: str) -> None:
    """Make the ledger at ``url`` look created by an eventcron without `instance`."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_fires_time"))
            conn.execute(text("ALTER TABLE fires DROP COLUMN instance"))
            conn.execute(insert(OLD_FIRES).values(
                schedule_id="old", zone="UTC", scheduled_for=T0, status="fired", users=1,
                updated_at=T0))
    finally:
        engine.dispose()


def test_opening_an_older_ledger_adds_the_column_and_older_versions_keep_working(
        ledger_url: str) -> None:
    Ledger.open(ledger_url).close()
    as_before_the_column(ledger_url)
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("fires")}
        assert "instance" not in columns  # the test can fail: the column really was gone

        ledger = Ledger.open(ledger_url)
        try:
            fired(ledger, "new", T0 + 60_000, 1)
            assert [(e.schedule_id, e.instance) for e in ledger.history()] == [
                ("new", ME), ("old", None)]
            schema_version = ledger.schema_version()
        finally:
            ledger.close()
        assert schema_version == 1  # no version bump: older versions may still open it
        with engine.begin() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("fires")}
            # An older eventcron names its columns: it writes and reads as before.
            conn.execute(insert(OLD_FIRES).values(
                schedule_id="old", zone="UTC", scheduled_for=T0 + 120_000, status="skipped",
                reason="catch_up_mode is none", users=0, updated_at=T0))
            old_view = conn.execute(select(OLD_FIRES).order_by(
                OLD_FIRES.c.scheduled_for)).all()
        assert "ix_fires_time" in indexes
        assert [(r.schedule_id, r.status) for r in old_view] == [
            ("old", "fired"), ("new", "fired"), ("old", "skipped")]
    finally:
        engine.dispose()
    reopened = Ledger.open(ledger_url)  # and opening it again changes nothing
    try:
        assert [e.instance for e in reopened.history(["old"])] == [None, None]
    finally:
        reopened.close()


def test_the_sqlite_plan_uses_indexes_for_the_list_and_the_counts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    ledger = Ledger.open(url)
    seen: list[str] = []
    try:
        for n in range(20):
            fired(ledger, f"s{n % 4}", T0 + n * 60_000, 3)
        def spy(*args: object) -> None:
            seen.append(str(args[2]))

        event.listen(ledger.engine, "before_cursor_execute", spy)
        ledger.history(limit=5)
        event.remove(ledger.engine, "before_cursor_execute", spy)
        (query,) = [s for s in seen if "deliveries" in s]
        with ledger.engine.connect() as conn:
            plan = " | ".join(str(r[3]) for r in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {query}", (5, 0)))
    finally:
        ledger.close()
    # The newest occurrences through ix_fires_time (no sort of the whole table), and each
    # occurrence's rows through the unique key, whose first columns are the occurrence.
    assert "SCAN fires USING INDEX ix_fires_time" in plan, plan
    assert "SEARCH deliveries USING INDEX sqlite_autoindex_deliveries_1 (schedule_id=? AND" \
           " scheduled_for=?)" in plan, plan
