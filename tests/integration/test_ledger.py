"""The ledger's contract, against real databases.

An SQLite file and SQLite in memory (``sqlite://``) always, PostgreSQL when set up.
"""

from __future__ import annotations

import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, text

from eventcron.ledger import (
    ENQUEUE_BATCH,
    EVENT_NAMESPACE,
    SCHEMA_VERSION,
    Filters,
    Ledger,
    LedgerError,
    NewRow,
    Result,
    event_id,
)

T0 = 1_790_000_000_000  # ms: a fixed "now"


def rows(n: int, *, schedule: str = "s", at: int = T0, due: int | None = None,
         expires: int | None = None, user_prefix: str = "u") -> list[NewRow]:
    return [NewRow(schedule, f"{user_prefix}{i}", "e:t", at, f'{{"i":{i}}}',
                   due if due is not None else at,
                   expires if expires is not None else at + 3_600_000)
            for i in range(n)]


def test_enqueue_is_idempotent(ledger: Ledger) -> None:
    assert ledger.enqueue(rows(100), T0) == 100
    assert ledger.enqueue(rows(100), T0) == 0
    assert ledger.enqueue(rows(150), T0) == 50
    assert ledger.counts()["pending"] == 150


def test_event_id_is_derived_from_the_occurrence_key(ledger: Ledger) -> None:
    ledger.enqueue(rows(1), T0)
    (row,) = ledger.rows(Filters())
    assert row.event_id == event_id("s", "u0", "e:t", T0)
    assert event_id("s", "u0", "e:t", T0) != event_id("s", "u0", "e:t", T0 + 1)


@given(st.text(), st.text(), st.text(), st.integers(0, 2**53))
def test_event_id_is_a_uuid5_of_the_key(schedule: str, user: str, kind: str, at: int) -> None:
    name = "\x1f".join((schedule, kind, str(at), user))
    assert event_id(schedule, user, kind, at) == str(uuid.uuid5(EVENT_NAMESPACE, name))


@pytest.mark.slow
def test_a_big_fire_is_a_few_transactions(ledger: Ledger) -> None:
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(ledger.engine, "commit", count)
    assert ledger.enqueue(rows(100_000), T0) == 100_000
    assert commits == 100_000 // ENQUEUE_BATCH


def test_claim_takes_due_rows_in_order_up_to_the_limit(ledger: Ledger) -> None:
    ledger.enqueue(rows(3, schedule="late", due=T0 + 500), T0)
    ledger.enqueue(rows(3, schedule="early", due=T0 - 500), T0)
    ledger.enqueue(rows(3, schedule="future", due=T0 + 10_000), T0)
    got = ledger.claim("a", T0 + 1000, 4, 30_000)
    assert sorted(c.schedule_id for c in got) == ["early", "early", "early", "late"]
    rest = ledger.claim("a", T0 + 1000, 10, 30_000)
    assert [c.schedule_id for c in rest] == ["late", "late"]
    assert ledger.claim("b", T0 + 1000, 10, 30_000) == []


def test_claims_expire_and_then_others_take_over(ledger: Ledger) -> None:
    ledger.enqueue(rows(2), T0)
    assert len(ledger.claim("a", T0, 10, 30_000)) == 2
    assert ledger.claim("b", T0 + 29_999, 10, 30_000) == []
    assert len(ledger.claim("b", T0 + 30_001, 10, 30_000)) == 2


def test_expired_rows_are_not_claimed(ledger: Ledger) -> None:
    ledger.enqueue(rows(2, expires=T0 + 10), T0)
    assert ledger.claim("a", T0 + 10, 10, 30_000) == []
    assert ledger.expire_due(T0 + 10) == 2
    assert ledger.counts()["expired"] == 2


def test_concurrent_claimers_never_share_a_row(ledger_url: str) -> None:
    setup = Ledger.open(ledger_url)
    setup.enqueue(rows(2000), T0)
    setup.close()
    seen: list[list[int]] = []
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        ledger = Ledger.open(ledger_url)
        mine: list[int] = []
        try:
            while True:
                got = ledger.claim(name, T0, 37, 60_000)
                if not got:
                    break
                mine.extend(c.id for c in got)
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)
        finally:
            ledger.close()
            seen.append(mine)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [i for mine in seen for i in mine]
    assert len(everything) == 2000
    assert len(set(everything)) == 2000


def test_record_outcomes(ledger: Ledger) -> None:
    ledger.enqueue(rows(3), T0)
    a, b, c = ledger.claim("me", T0, 10, 30_000)
    ledger.record([
        Result(a.id, "delivered", 1, T0, 200, None, delivered_at=T0 + 5),
        Result(b.id, "pending", 1, T0 + 60_000, 503, "HTTP 503"),
        Result(c.id, "failed", 1, T0, 400, "HTTP 400 Bad Request"),
    ], "me", T0 + 5)
    by_user = {r.app_user_id: r for r in ledger.rows(Filters())}
    assert (by_user["u0"].status, by_user["u0"].attempts, by_user["u0"].delivered_at) == (
        "delivered", 1, T0 + 5)
    assert (by_user["u1"].status, by_user["u1"].next_attempt_at, by_user["u1"].last_error) == (
        "pending", T0 + 60_000, "HTTP 503")
    assert (by_user["u2"].status, by_user["u2"].last_status_code) == ("failed", 400)
    # The retried row is free again once due.
    assert [r.app_user_id for r in ledger.claim("me", T0 + 60_000, 10, 30_000)] == ["u1"]


def test_a_row_delivered_after_a_failed_attempt_keeps_its_error(ledger: Ledger) -> None:
    ledger.enqueue(rows(2), T0)
    retried, first_time = ledger.claim("me", T0, 10, 30_000)
    ledger.record([Result(retried.id, "pending", 1, T0 + 100, None,
                          "the server broke the protocol: Server disconnected"),
                   Result(first_time.id, "delivered", 1, T0, 200, None)], "me", T0 + 5)
    (again,) = ledger.claim("me", T0 + 100, 10, 30_000)
    ledger.record([Result(again.id, "delivered", 2, T0, 200, None)], "me", T0 + 105)
    by_user = {r.app_user_id: r for r in ledger.rows(Filters())}
    assert (by_user["u0"].status, by_user["u0"].attempts, by_user["u0"].last_status_code,
            by_user["u0"].last_error) == (
        "delivered", 2, 200, "the server broke the protocol: Server disconnected")
    assert (by_user["u1"].status, by_user["u1"].last_error) == ("delivered", None)


def test_a_late_answer_never_overwrites_another_owners_claim(ledger: Ledger) -> None:
    ledger.enqueue(rows(1), T0)
    (row,) = ledger.claim("slow", T0, 1, 1000)
    ledger.claim("fast", T0 + 2000, 1, 30_000)  # the lease ran out; another took over
    ledger.record([Result(row.id, "pending", 1, T0 + 9000, 503, "HTTP 503")], "slow", T0 + 3000)
    (current,) = ledger.rows(Filters())
    assert (current.attempts, current.last_error) == (0, None)
    # A delivery is the truth whoever reports it.
    ledger.record([Result(row.id, "delivered", 1, T0, 200, None)], "slow", T0 + 3000)
    assert ledger.rows(Filters())[0].status == "delivered"


def test_renew_extends_only_the_rows_named(ledger: Ledger) -> None:
    ledger.enqueue(rows(3), T0)
    a, b, c = ledger.claim("me", T0, 10, 1000)
    assert ledger.renew("me", [a.id, b.id], T0 + 500, 10_000) == 2
    assert ledger.renew("other", [c.id], T0 + 500, 10_000) == 0
    # c lapsed after its first lease; a and b are still held.
    assert [r.id for r in ledger.claim("next", T0 + 2000, 10, 1000)] == [c.id]


def test_release_and_dead_owners(ledger: Ledger) -> None:
    ledger.enqueue(rows(4), T0)
    mine = ledger.claim("alive", T0, 2, 60_000)
    ledger.claim("dead", T0, 2, 60_000)
    ledger.release([mine[0].id], "alive")
    assert ledger.release_dead_owners(lambda owner: owner == "dead") == 2
    assert len(ledger.claim("next", T0 + 1, 10, 60_000)) == 3


def test_cancel_replay_and_counts(ledger: Ledger) -> None:
    ledger.enqueue(rows(2, schedule="gone"), T0)
    ledger.enqueue(rows(3, schedule="kept"), T0)
    assert ledger.cancel_schedules(["gone"], "schedule removed", T0) == 2
    claimed = ledger.claim("me", T0, 10, 30_000)
    ledger.record([Result(c.id, "failed", 3, T0, 500, "HTTP 500") for c in claimed], "me", T0)
    assert ledger.counts() == {"pending": 0, "delivered": 0, "failed": 3, "expired": 0,
                               "cancelled": 2, "suppressed": 0}
    assert ledger.replay(Filters(user=("u1",)), T0, 60_000, dry_run=True) == 1
    assert ledger.counts()["failed"] == 3
    assert ledger.replay(Filters(), T0 + 5, 60_000) == 3
    again = ledger.rows(Filters(status=("pending",)))
    assert {(r.attempts, r.next_attempt_at) for r in again} == {(0, T0 + 5)}
    assert ledger.counts_by_schedule()["gone"]["cancelled"] == 2


def test_prune_removes_only_old_final_rows_no_longer_needed(ledger: Ledger) -> None:
    ledger.enqueue(rows(2, schedule="done"), T0)
    ledger.enqueue(rows(2, schedule="waiting"), T0)
    ledger.enqueue(rows(2, schedule="recent", at=T0 + 10_000), T0)
    ledger.enqueue(rows(2, schedule="interrupted"), T0)
    ledger.begin_fire("interrupted", "UTC", T0, T0)  # a restart would fire it again
    finals = [c for c in ledger.claim("me", T0 + 10_000, 100, 30_000)
              if c.schedule_id != "waiting"]
    ledger.record([Result(c.id, "delivered", 1, T0, 200, None) for c in finals], "me", T0)
    # Changed before T0+1; occurrences before T0+5000 can no longer be fired again.
    assert ledger.prune(T0 + 1, T0 + 5000, batch=1) == 2
    left = ledger.counts_by_schedule()
    assert "done" not in left
    assert left["waiting"]["pending"] == 2  # pending rows are never pruned
    assert left["recent"]["delivered"] == 2  # still inside the catch-up horizon
    assert left["interrupted"]["delivered"] == 2  # its fire may be completed again
    assert [f.status for f in ledger.fires_of("interrupted")] == ["firing"]


def test_fire_records(ledger: Ledger) -> None:
    assert ledger.begin_fire("s", "UTC", T0, T0)
    assert ledger.begin_fire("s", "UTC", T0, T0)  # still firing: a retry may complete it
    assert [f.scheduled_for for f in ledger.unfinished_fires()] == [T0]
    ledger.finish_fire("s", "UTC", T0, 10, T0)
    assert not ledger.begin_fire("s", "UTC", T0, T0)
    assert ledger.unfinished_fires() == []
    ledger.record_skipped("s", "UTC", [T0 - 1000, T0 - 2000], "too old", T0)
    assert ledger.last_fired() == {"s": T0}
    assert [(f.status, f.reason) for f in ledger.fires_of("s")] == [
        ("fired", None), ("skipped", "too old"), ("skipped", "too old")]


def test_job_state_is_monotonic_unless_reset(ledger: Ledger) -> None:
    ledger.set_job_state("s@UTC", "s", "fp1", T0, T0)
    ledger.set_job_state("s@UTC", "s", "fp1", T0 - 10, T0)
    assert ledger.job_states() == {"s@UTC": ("fp1", T0)}
    ledger.set_job_state("s@UTC", "s", "fp2", T0 - 10, T0, reset=True)
    assert ledger.job_states() == {"s@UTC": ("fp2", T0 - 10)}


def test_a_ledger_from_a_newer_eventcron_is_refused(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    assert ledger.schema_version() == SCHEMA_VERSION
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE eventcron_meta SET value = '99' WHERE key = 'schema_version'"))
    ledger.close()
    with pytest.raises(LedgerError, match="schema version 99, newer than"):
        Ledger.open(ledger_url)


def test_sqlite_ledger_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE((tmp_path / "l.db").stat().st_mode) == 0o600
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        ledger.close()


def test_missing_folder_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"the folder .* does not exist"):
        Ledger.open(f"sqlite:///{tmp_path / 'nope' / 'l.db'}")
