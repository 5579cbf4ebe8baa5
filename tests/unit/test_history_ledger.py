"""The ledger's history: occurrences newest first, who fired or skipped them, their rows.

These run on an in-memory ledger; ``tests/integration/test_history_ledger.py`` runs the same
tests on an SQLite file and on PostgreSQL by overriding the ``ledger`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from eventcron.ledger import HistoryEntry, Ledger, NewRow, Result
from eventcron.states import Status

T0 = 1_790_000_000_000  # ms
MIN = 60_000
ME = "box:4242:abcd1234:4026531836:0badf00d"  # a claim owner name
HAND = "eventcron fire by ada on box pid 99"


@pytest.fixture
def ledger(memory_ledger: Ledger) -> Ledger:
    """The ledger under test (overridden in the integration tests: a file, PostgreSQL)."""
    return memory_ledger


def enqueue(ledger: Ledger, schedule: str, at: int, users: int) -> None:
    ledger.enqueue([NewRow(schedule, f"u{i}", "e:t", at, "{}", at, at + 3_600_000)
                    for i in range(users)], at)


def deliver(ledger: Ledger, outcomes: dict[str, tuple[Status, int | None]], now: int) -> None:
    """Claim every due row and record ``user -> (status, delivered_at)`` for it."""
    claimed = ledger.claim("me", now, 1000, 60_000)
    ledger.record([Result(c.id, outcomes[c.app_user_id][0], 1, now, 200, None,
                          delivered_at=outcomes[c.app_user_id][1])
                   for c in claimed if c.app_user_id in outcomes], "me", now)


def fired(ledger: Ledger, schedule: str, at: int, users: int, *, zone: str = "UTC",
          instance: str | None = ME) -> None:
    """Fire an occurrence as the firer does: open the record, enqueue, finish it."""
    assert ledger.begin_fire(schedule, zone, at, at, instance=instance)
    enqueue(ledger, schedule, at, users)
    ledger.finish_fire(schedule, zone, at, users, at, instance=instance)


@pytest.fixture
def statements(ledger: Ledger) -> Iterator[list[str]]:
    """Collect the SQL statements the ledger runs from here on."""
    seen: list[str] = []

    def spy(*args: Any) -> None:
        seen.append(args[2])

    event.listen(ledger.engine, "before_cursor_execute", spy)
    yield seen
    event.remove(ledger.engine, "before_cursor_execute", spy)


def test_occurrences_come_newest_first_with_their_rows_by_state(ledger: Ledger) -> None:
    fired(ledger, "a", T0, 3)
    deliver(ledger, {"u0": ("delivered", T0 + 412), "u1": ("delivered", T0 + 61_000),
                     "u2": ("failed", None)}, T0)
    ledger.record_skipped("b", "UTC", [T0 - MIN], "catch_up_mode is none", T0, instance=ME)
    assert ledger.begin_fire("c", "Europe/Berlin", T0 + MIN, T0, instance=ME)  # in progress

    (c, a, b) = ledger.history()
    none = {"pending": 0, "delivered": 0, "failed": 0, "expired": 0, "cancelled": 0,
            "suppressed": 0}
    assert a == HistoryEntry("a", "UTC", T0, "fired", None, ME, 3,
                             {**none, "delivered": 2, "failed": 1}, T0 + 412, T0 + 61_000)
    assert b == HistoryEntry("b", "UTC", T0 - MIN, "skipped", "catch_up_mode is none", ME, 0,
                             none, None, None)
    assert (c.status, c.zone, c.rows, c.counts, c.first_delivered_at) == (
        "firing", "Europe/Berlin", 0, none, None)


def test_filters_by_schedule_and_time_and_keeps_the_newest(ledger: Ledger) -> None:
    for n in range(5):
        fired(ledger, "a", T0 + n * MIN, 1)
        fired(ledger, "b", T0 + n * MIN, 2)
    assert [(e.schedule_id, e.scheduled_for) for e in ledger.history(limit=3)] == [
        ("a", T0 + 4 * MIN), ("b", T0 + 4 * MIN), ("a", T0 + 3 * MIN)]
    assert [e.scheduled_for for e in ledger.history(["b"], since=T0 + 3 * MIN)] == [
        T0 + 4 * MIN, T0 + 3 * MIN]
    assert {e.schedule_id for e in ledger.history(["a", "b"])} == {"a", "b"}
    assert ledger.history(["nope"]) == []
    assert all(e.counts["pending"] == e.rows for e in ledger.history())


def test_one_statement_whatever_the_number_of_occurrences(
        ledger: Ledger, statements: list[str]) -> None:
    for n in range(30):
        fired(ledger, f"s{n % 3}", T0 + n * MIN, 2)
    statements.clear()
    assert len(ledger.history()) == 30
    history_statements = [s for s in statements if "deliveries" in s]
    assert len(history_statements) == 1  # the counts of all 30 in one grouped join
    assert "GROUP BY" in history_statements[0]


def test_zones_sharing_an_instant_share_its_counts_but_not_their_rows(ledger: Ledger) -> None:
    # `timezone: user`: Berlin and Paris both fire 09:00 local at one UTC instant. Rows
    # do not record their zone, so each zone's line counts the rows of both.
    for zone, users in (("Europe/Berlin", 2), ("Europe/Paris", 1)):
        assert ledger.begin_fire("u", zone, T0, T0, instance=ME)
        ledger.enqueue([NewRow("u", f"{zone}-{i}", "e:t", T0, "{}", T0, T0 + 3_600_000)
                        for i in range(users)], T0)
        ledger.finish_fire("u", zone, T0, users, T0, instance=ME)
    berlin, paris = ledger.history()
    assert (berlin.zone, berlin.rows, paris.zone, paris.rows) == (
        "Europe/Berlin", 2, "Europe/Paris", 1)
    assert berlin.counts["pending"] == paris.counts["pending"] == 3


def test_a_skipped_fire_shows_what_became_of_rows_it_had_enqueued(ledger: Ledger) -> None:
    assert ledger.begin_fire("gone", "UTC", T0, T0, instance=ME)
    enqueue(ledger, "gone", T0, 2)  # then the schedule was removed before it finished
    ledger.cancel_schedules(["gone"], "schedule removed or disabled", T0 + 1)
    ledger.abandon_fires(["gone"], "schedule removed or disabled", T0 + 1, instance="other")
    (entry,) = ledger.history()
    assert (entry.status, entry.reason, entry.instance, entry.counts["cancelled"]) == (
        "skipped", "schedule removed or disabled", "other", 2)


def test_latest_occurrence_of_each_schedule_fired_or_skipped(ledger: Ledger) -> None:
    fired(ledger, "a", T0, 1)
    ledger.record_skipped("a", "UTC", [T0 + MIN], "catch_up_mode is none", T0, instance=ME)
    fired(ledger, "b", T0 - MIN, 2)
    fired(ledger, "u", T0, 1, zone="Europe/Paris")
    fired(ledger, "u", T0, 1, zone="Europe/Berlin")
    latest = ledger.latest_occurrences()
    assert {k: (e.scheduled_for, e.status) for k, e in latest.items()} == {
        "a": (T0 + MIN, "skipped"), "b": (T0 - MIN, "fired"), "u": (T0, "fired")}
    assert latest["u"].zone == "Europe/Berlin"  # the first zone by name stands for it


@pytest.mark.parametrize("write", [
    "begin_fire", "finish_fire", "by_hand_reopens_a_skip", "skip_passed", "record_skipped",
    "fire_together", "abandon_fires"])
def test_every_writer_of_a_fire_record_records_who_it_is(ledger: Ledger, write: str) -> None:
    def run() -> None:
        if write == "begin_fire":
            ledger.begin_fire("s", "UTC", T0, T0, instance=HAND)
        elif write == "finish_fire":
            ledger.begin_fire("s", "UTC", T0, T0, instance="someone else")
            ledger.finish_fire("s", "UTC", T0, 0, T0, instance=HAND)
        elif write == "by_hand_reopens_a_skip":
            ledger.record_skipped("s", "UTC", [T0], "catch_up_mode is none", T0,
                                  instance="someone else")
            assert ledger.begin_fire_by_hand("s", "UTC", T0, T0, instance=HAND)
        elif write == "skip_passed":
            ledger.skip_passed("s", "UTC", T0, T0, instance=HAND)
        elif write == "record_skipped":
            ledger.record_skipped("s", "UTC", [T0], "catch_up_mode is none", T0,
                                  instance=HAND)
        elif write == "fire_together":
            ledger.fire_together([("s@UTC", "s", "UTC", "f", T0, [], T0)], T0, instance=HAND)
        else:
            ledger.begin_fire("s", "UTC", T0, T0, instance="someone else")
            ledger.abandon_fires(["s"], "no longer part of the plan", T0, instance=HAND)

    run()
    (record,) = ledger.fires_of("s")
    assert record.instance == HAND
    assert [e.instance for e in ledger.history()] == [HAND]


def test_a_record_written_without_an_instance_shows_none(ledger: Ledger) -> None:
    ledger.begin_fire("s", "UTC", T0, T0)  # as an eventcron older than the column does
    (entry,) = ledger.history()
    assert entry.instance is None
