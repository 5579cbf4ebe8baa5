"""The ledger's side of the campaign rules, against real databases.

Rows the rules make final at fire time, the recipient's zone, frequency caps decided in the
ledger (one unique slot per user, cap, window and slot number), opt-outs of pending rows,
retention and replay of suppressed rows, and ledgers from before all this. An SQLite file
and SQLite in memory always, PostgreSQL when set up.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, inspect, select, text
from sqlalchemy.exc import OperationalError

from eventcron.cli.main import main
from eventcron.clock import from_ms, rfc3339
from eventcron.ledger import CapSlot, Filters, Ledger, NewRow, Result, cap_slots, deliveries
from eventcron.ledger.dialect import PostgreSQL
from eventcron.states import FINAL_STATUSES, STATUSES, Status
from tests.pg import postgres_url, reset_postgres

T0 = 1_790_000_000_000  # ms: a fixed "now" (2026-09-21T14:13:20Z)
HOUR = 3_600_000
DAY = 24 * HOUR
BERLIN = "Europe/Berlin"
LABEL = "2026-09-21 (Europe/Berlin)"


def cap(limit: int = 1, unit: str = "day", window: int = T0 - 12 * HOUR,
        label: str = LABEL) -> CapSlot:
    """The cap window of ``limit``/``unit`` starting at ``window``."""
    length = {"h": HOUR, "day": DAY, "week": 7 * DAY}[unit]
    return CapSlot(unit, limit, window, window + length, label)


def rows(n: int, *, schedule: str = "s", at: int = T0, due: int | None = None,
         slot: CapSlot | None = None, zone: str | None = BERLIN, user: str = "u",
         status: Status = "pending", reason: str | None = None) -> list[NewRow]:
    """``n`` rows of one occurrence, for users ``u0``, ``u1``, ..."""
    return [NewRow(schedule, f"{user}{i}", "e:t", at, f'{{"i":{i}}}',
                   due if due is not None else at, at + 6 * HOUR, zone,
                   status, reason, slot)
            for i in range(n)]




def by_schedule(ledger: Ledger) -> dict[str, Counter[str]]:
    """Return ``schedule -> Counter(status)``."""
    out: dict[str, Counter[str]] = {}
    for r in ledger.rows(Filters()):
        out.setdefault(r.schedule_id, Counter())[r.status] += 1
    return out


def reasons(ledger: Ledger, schedule: str) -> set[str | None]:
    return {r.last_error for r in ledger.rows(Filters(schedule=(schedule,)))}


def slots_held(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(cap_slots)).scalar_one())


def sent(schedule: str, at: int) -> str:
    return f"{schedule} of {rfc3339(from_ms(at))}"


def test_suppressed_is_a_final_state_that_replay_leaves_alone() -> None:
    assert STATUSES[-1] == "suppressed" and "suppressed" in FINAL_STATUSES


def test_the_recipient_zone_comes_back_with_each_claimed_row(ledger: Ledger) -> None:
    # One enqueue of every shape: plain rows, zoned rows, and rows inserted final.
    ledger.enqueue([*rows(2, user="plain", zone=None), *rows(2, user="tokyo", zone="Asia/Tokyo"),
                    *rows(1, user="out", status="suppressed", reason="opted out")], T0)
    claimed = ledger.claim("me", T0, 10, 30_000)
    assert sorted((c.app_user_id, c.zone) for c in claimed) == [
        ("plain0", None), ("plain1", None), ("tokyo0", "Asia/Tokyo"), ("tokyo1", "Asia/Tokyo")]


def test_rows_inserted_final_keep_their_reason_and_are_never_claimed(ledger: Ledger) -> None:
    quiet = ("quiet hours 21:00-08:00 (Europe/Berlin) last past its expiry"
             " (delivery.expires_after)")
    added = ledger.enqueue([*rows(2, user="out", status="suppressed", reason="opted out",
                                  slot=cap()),
                            *rows(1, user="late", status="expired", reason=quiet, slot=cap())],
                           T0 - 5)
    assert added == 3  # rows inserted final are rows added all the same
    assert ledger.claim("me", T0 + HOUR, 10, 30_000) == []
    assert ledger.expire_due(T0 + 7 * HOUR) == 0  # already final
    assert ledger.counts()["suppressed"] == 2 and ledger.counts()["expired"] == 1
    assert {(r.app_user_id, r.status, r.last_error) for r in ledger.rows(Filters())} == {
        ("out0", "suppressed", "opted out"), ("out1", "suppressed", "opted out"),
        ("late0", "expired", quiet)}
    with ledger.engine.connect() as conn:
        assert set(conn.execute(select(deliveries.c.updated_at)).scalars()) == {T0 - 5}
    assert slots_held(ledger) == 0  # a row inserted final takes no slot


def test_a_cap_of_one_a_day_lets_the_first_schedule_through(ledger: Ledger) -> None:
    assert ledger.enqueue(rows(50, schedule="morning", slot=cap()), T0) == 50
    assert ledger.enqueue(rows(50, schedule="evening", at=T0 + HOUR, slot=cap()), T0) == 50
    assert by_schedule(ledger) == {"morning": Counter(pending=50),
                                   "evening": Counter(suppressed=50)}
    assert reasons(ledger, "evening") == {
        f"per-user cap 1/day reached for {LABEL}: filled by {sent('morning', T0)}"}
    # The next day is another window; enqueueing again adds and changes nothing.
    tomorrow = cap(window=T0 + 12 * HOUR, label="2026-09-22 (Europe/Berlin)")
    assert ledger.enqueue(rows(50, schedule="evening", at=T0 + DAY, slot=tomorrow), T0) == 50
    assert ledger.enqueue(rows(50, schedule="evening", at=T0 + HOUR, slot=cap()), T0) == 0
    assert by_schedule(ledger)["evening"] == Counter(suppressed=50, pending=50)
    assert slots_held(ledger) == 100


def test_a_cap_of_two_a_week_names_both_holders(ledger: Ledger) -> None:
    week = cap(2, "week", label="the week of 2026-09-21 (Europe/Berlin)")
    for i, schedule in enumerate(("mon", "wed", "fri")):
        ledger.enqueue(rows(20, schedule=schedule, at=T0 + i * DAY, slot=week), T0)
    assert by_schedule(ledger) == {"mon": Counter(pending=20), "wed": Counter(pending=20),
                                   "fri": Counter(suppressed=20)}
    assert reasons(ledger, "fri") == {
        "per-user cap 2/week reached for the week of 2026-09-21 (Europe/Berlin): filled by"
        f" {sent('mon', T0)} and {sent('wed', T0 + DAY)}"}


def test_one_user_twice_in_a_batch_gets_one_slot(ledger: Ledger) -> None:
    first, second = rows(1, schedule="a", slot=cap())[0], rows(1, schedule="b", slot=cap())[0]
    assert ledger.enqueue([first, second], T0) == 2
    assert by_schedule(ledger) == {"a": Counter(pending=1), "b": Counter(suppressed=1)}
    assert reasons(ledger, "b") == {
        f"per-user cap 1/day reached for {LABEL}: filled by {sent('a', T0)}"}


def test_exempt_rows_are_neither_counted_nor_capped(ledger: Ledger) -> None:
    ledger.enqueue(rows(10, schedule="receipt"), T0)  # exempt: no cap
    ledger.enqueue(rows(10, schedule="promo", slot=cap()), T0)
    ledger.enqueue(rows(10, schedule="receipt-2", at=T0 + 1), T0)
    assert {s: dict(c) for s, c in by_schedule(ledger).items()} == {
        "receipt": {"pending": 10}, "promo": {"pending": 10}, "receipt-2": {"pending": 10}}
    assert slots_held(ledger) == 10


def test_firing_together_takes_slots_as_enqueue_does(ledger: Ledger) -> None:
    added = ledger.fire_together([
        ("a@UTC", "a", "UTC", "fp", T0, rows(5, schedule="a", slot=cap()), T0),
        ("b@UTC", "b", "UTC", "fp", T0 + 1, rows(5, schedule="b", at=T0 + 1, slot=cap()), T0),
    ], T0)
    assert added == [(5, 0), (5, 5)]  # rows added, of which the cap suppressed
    assert by_schedule(ledger) == {"a": Counter(pending=5), "b": Counter(suppressed=5)}


def test_a_cap_lowered_by_a_reload_counts_what_the_window_already_took(ledger: Ledger) -> None:
    """Slots are keyed by the window's kind, not the count: 3/day, then 1/day, is full."""
    for i in range(3):
        assert ledger.enqueue_counted(rows(2, schedule=f"s{i}", at=T0 + i, slot=cap(3)),
                                      T0) == (2, 0)
    assert ledger.enqueue_counted(rows(2, schedule="late", at=T0 + 9, slot=cap(1)),
                                  T0) == (2, 2)
    assert ledger.enqueue_counted(rows(2, schedule="more", at=T0 + 10, slot=cap(4)),
                                  T0) == (2, 0)
    reasons = {r.last_error or "" for r in ledger.rows(Filters(status=("suppressed",)))}
    assert len(reasons) == 1 and reasons.pop().startswith("per-user cap 1/day reached")


def test_a_big_capped_batch_is_a_few_statements(ledger: Ledger) -> None:
    ledger.enqueue(rows(5000, schedule="a", slot=cap()), T0)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(ledger.engine, "before_cursor_execute", count)
    assert ledger.enqueue(rows(5000, schedule="b", slot=cap()), T0) == 5000
    event.remove(ledger.engine, "before_cursor_execute", count)
    # The INSERT of the rows in parts, then a handful for the slots: never one per row.
    assert statements <= 20
    assert by_schedule(ledger)["b"] == Counter(suppressed=5000)


def test_a_slot_survives_a_restart(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    ledger.enqueue(rows(3, schedule="before", slot=cap()), T0)
    ledger.close()
    ledger = Ledger.open(ledger_url)
    try:
        ledger.enqueue(rows(3, schedule="after", at=T0 + HOUR, slot=cap()), T0 + HOUR)
        assert by_schedule(ledger)["after"] == Counter(suppressed=3)
    finally:
        ledger.close()


@pytest.mark.parametrize("limit", [1, 2])
def test_instances_enqueueing_at_once_never_pass_the_cap(
        ledger_url: str, limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    users = 2000
    Ledger.open(ledger_url).close()  # the tables exist before the instances start
    start = threading.Barrier(3)
    errors: list[BaseException] = []
    if ledger_url.startswith("postgresql"):
        # The worst case, every time: all three read the slots (none taken) before any of
        # them inserts one. (SQLite's writers take turns: there, the next one reads after.)
        have_read = threading.Barrier(3)
        first_reads: set[int] = set()
        read = PostgreSQL.slots_held

        def read_together(self: PostgreSQL, conn: Connection,
                          keys: Sequence[tuple[str, str, int]]) -> Sequence[Sequence[Any]]:
            found = read(self, conn, keys)
            if threading.get_ident() not in first_reads:
                first_reads.add(threading.get_ident())
                have_read.wait(timeout=30)
            return found

        monkeypatch.setattr(PostgreSQL, "slots_held", read_together)

    def instance(name: str) -> None:
        ledger = Ledger.open(ledger_url)
        try:
            start.wait(timeout=30)
            ledger.enqueue(rows(users, schedule=name, slot=cap(limit)), T0)
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)
        finally:
            ledger.close()

    threads = [threading.Thread(target=instance, args=(f"s{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    ledger = Ledger.open(ledger_url)
    try:
        per_user: dict[str, Counter[str]] = {}
        for r in ledger.rows(Filters()):
            per_user.setdefault(r.app_user_id, Counter())[r.status] += 1
        assert len(per_user) == users
        assert set(map(frozenset, (c.items() for c in per_user.values()))) == {
            frozenset({("pending", limit), ("suppressed", 3 - limit)})}
        assert slots_held(ledger) == users * limit
    finally:
        ledger.close()


@pytest.mark.postgres
def test_a_transaction_that_lost_a_deadlock_is_done_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    url = postgres_url()
    reset_postgres(url)
    tries: list[int] = []
    take = PostgreSQL.take_slots

    def deadlock_once(self: PostgreSQL, conn: Connection, slots: Sequence[tuple[Any, ...]],
                      now: int) -> int:
        tries.append(len(slots))
        if len(tries) == 1:  # as PostgreSQL fails the loser of a deadlock
            raise OperationalError("INSERT INTO cap_slots", {},
                                   psycopg.errors.DeadlockDetected("deadlock detected"))
        return take(self, conn, slots, now)

    monkeypatch.setattr(PostgreSQL, "take_slots", deadlock_once)
    ledger = Ledger.open(url)
    try:
        assert ledger.enqueue(rows(10, slot=cap()), T0) == 10
        assert tries == [10, 10]  # all of it again: the first try was rolled back
        assert ledger.counts()["pending"] == 10 and slots_held(ledger) == 10
    finally:
        ledger.close()
        reset_postgres(url)


def test_opting_out_suppresses_pending_rows_no_live_claim_holds(ledger: Ledger) -> None:
    ledger.enqueue(rows(1, user="live", due=T0 - 2), T0)
    ledger.enqueue(rows(1, user="lapsed", due=T0 - 1), T0)
    ledger.enqueue(rows(1, user="free", due=T0 + DAY), T0)
    ledger.enqueue(rows(1, user="kept", due=T0 + DAY), T0)
    ledger.enqueue(rows(1, user="done", due=T0 - 3), T0)
    (done,) = ledger.claim("x", T0, 1, 60_000)
    ledger.record([Result(done.id, "delivered", 1, T0, 200, None)], "x", T0)
    (live,) = ledger.claim("a", T0, 1, 60_000)
    (lapsed,) = ledger.claim("b", T0, 1, 1_000)
    now = T0 + 5_000  # b's lease ran out; a's holds
    out = {"live0", "lapsed0", "free0", "done0", "nobody"}
    assert ledger.suppress_users(out, "opted out", now) == 2
    states = {r.app_user_id: (r.status, r.last_error) for r in ledger.rows(Filters())}
    assert states == {"live0": ("pending", None), "lapsed0": ("suppressed", "opted out"),
                      "free0": ("suppressed", "opted out"), "kept0": ("pending", None),
                      "done0": ("delivered", None)}
    # The slow owner's late answer does not bring the row back.
    ledger.record([Result(lapsed.id, "pending", 1, now + 60_000, 503, "HTTP 503")], "b", now)
    assert ledger.rows(Filters(user=("lapsed0",)))[0].status == "suppressed"
    assert ledger.suppress_users(set(), "opted out", now) == 0
    assert live.app_user_id == "live0"


def test_retention_prunes_suppressed_rows_and_slots_of_ended_windows(ledger: Ledger) -> None:
    then = T0 - 3 * DAY
    old = cap(window=then, label="2026-09-18 (Europe/Berlin)")
    ledger.enqueue(rows(2, schedule="kept", at=then, slot=old), then)  # pending: never pruned
    ledger.enqueue(rows(2, schedule="over", at=then + 1, slot=old), then)  # suppressed
    ledger.enqueue(rows(2, schedule="recent", slot=cap()), T0)
    assert slots_held(ledger) == 4
    # Suppressed rows go like other final rows; the old window ended at then + DAY, and its
    # slots stay while a catch-up could still fire into it.
    assert ledger.prune(T0 - DAY, then + DAY - 1) == 2
    assert "over" not in by_schedule(ledger)
    assert by_schedule(ledger)["kept"] == Counter(pending=2)
    assert slots_held(ledger) == 4
    ledger.prune(T0 - DAY, then + DAY + 1)
    assert slots_held(ledger) == 2  # the recent window's
    assert by_schedule(ledger)["kept"] == Counter(pending=2)


def test_a_prune_walks_slots_in_steps(ledger: Ledger) -> None:
    old = cap(window=T0 - 3 * DAY)
    ledger.enqueue(rows(7, slot=old), T0 - 3 * DAY)
    at = ledger.prune_step(T0, T0, batch=3)[1]
    while at is not None and at.table != "cap_slots":
        at = ledger.prune_step(T0, T0, at, batch=3)[1]
    steps = 0
    while at is not None:
        at = ledger.prune_step(T0, T0, at, batch=3)[1]
        steps += 1
    assert steps == 3 and slots_held(ledger) == 0


def test_replay_puts_suppressed_rows_back_only_when_asked(ledger: Ledger) -> None:
    ledger.enqueue(rows(2, user="out", status="suppressed", reason="opted out"), T0)
    ledger.enqueue(rows(1, user="broke"), T0)
    (row,) = ledger.claim("me", T0, 10, 30_000)
    ledger.record([Result(row.id, "failed", 1, T0, 400, "HTTP 400")], "me", T0)
    assert ledger.replay(Filters(status=("suppressed",)), T0, HOUR) == 0
    assert ledger.replay(Filters(), T0, HOUR, dry_run=True) == 1
    assert ledger.replay(Filters(), T0, HOUR, include_suppressed=True, dry_run=True) == 3
    assert ledger.counts()["suppressed"] == 2
    assert ledger.replay(Filters(status=("suppressed",)), T0 + 1, HOUR,
                         include_suppressed=True) == 2
    assert {(r.app_user_id, r.status, r.last_error, r.next_attempt_at)
            for r in ledger.rows(Filters(user=("out0", "out1")))} == {
        ("out0", "pending", None, T0 + 1), ("out1", "pending", None, T0 + 1)}


def test_a_ledger_from_before_the_campaign_rules_opens_and_upgrades(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    with ledger.engine.begin() as conn:  # as an older eventcron created it
        conn.execute(text("DROP TABLE cap_slots"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN zone"))
        conn.execute(text(
            "INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type,"
            " scheduled_for, data, status, attempts, next_attempt_at, expires_at, created_at,"
            " updated_at) VALUES ('e1', 'old', 'u0', 'e:t', :t, '{}', 'pending', 0, :t,"
            " :x, :t, :t)"), {"t": T0, "x": T0 + HOUR})
    ledger.close()
    ledger = Ledger.open(ledger_url)
    try:
        found = inspect(ledger.engine)
        assert "zone" in {c["name"] for c in found.get_columns("deliveries")}
        assert found.has_table("cap_slots")
        assert [(c.app_user_id, c.zone) for c in ledger.claim("me", T0, 10, 30_000)] == [
            ("u0", None)]
        ledger.enqueue(rows(1, schedule="a", slot=cap()) + rows(1, schedule="b", slot=cap()),
                       T0)
        assert by_schedule(ledger)["b"] == Counter(suppressed=1)
    finally:
        ledger.close()


def test_the_commands_show_and_replay_suppressed_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no schedule file here: the ledger alone answers
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    ledger = Ledger.open(url)
    ledger.enqueue(rows(1, schedule="promo", slot=cap()), T0)
    ledger.enqueue(rows(1, schedule="promo-2", slot=cap()), T0)
    ledger.close()
    capsys.readouterr()

    assert main(["deliveries", "--database", url, "--status", "suppressed", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["schedule"], row["status"]) == ("promo-2", "suppressed")
    assert row["last_error"].startswith("per-user cap 1/day reached for")
    assert main(["deliveries", "--database", url, "--status", "suppressed"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].split()[1] == "suppressed" and "per-user cap 1/day" in listed[1]
    col = listed[0].index("TRIES")
    assert listed[1][col:col + 5] == "    0"  # the columns still line up

    assert main(["status", "--database", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["suppressed"] == 1

    assert main(["replay", "--database", url, "--status", "suppressed"]) != 0
    assert "--include-suppressed" in capsys.readouterr().err
    assert main(["replay", "--database", url, "--include-suppressed", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == (
        "1 failed, expired or suppressed event would be replayed (dry run; nothing changed).")
