"""An in-memory ledger (``sqlite://``): one database, whichever thread asks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from eventcron.ledger import Filters, Ledger, LedgerError, LedgerThread, NewRow, Result

T0 = 1_790_000_000_000  # ms: a fixed "now"


def rows(n: int, *, schedule: str = "s") -> list[NewRow]:
    return [NewRow(schedule, f"u{i}", "e:t", T0, "{}", T0, T0 + 3_600_000) for i in range(n)]


def test_the_ledger_thread_sees_what_the_callers_thread_wrote(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows(3), T0)

    async def deliver() -> None:
        db = LedgerThread(memory_ledger)
        try:
            claimed = await db.call(memory_ledger.claim, "me", T0, 10, 30_000)
            assert len(claimed) == 3
            await db.call(memory_ledger.record,
                          [Result(c.id, "delivered", 1, T0, 200, None) for c in claimed],
                          "me", T0)
            assert memory_ledger.counts()["delivered"] == 3
        finally:
            db.close()  # closes the ledger too: its database is gone

    asyncio.run(deliver())


def test_threads_take_turns_and_never_share_a_row(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows(500), T0)
    seen: list[int] = []
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            while got := memory_ledger.claim(name, T0, 7, 60_000):
                seen.extend(c.id for c in got)
                memory_ledger.enqueue(rows(2, schedule=name), T0)  # writes in between
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(seen) == len(set(seen)) == memory_ledger.counts()["pending"]


def test_each_memory_ledger_is_its_own_database(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows(2), T0)
    other = Ledger.open("sqlite://")
    try:
        assert other.rows(Filters()) == []
    finally:
        other.close()
    assert len(memory_ledger.rows(Filters())) == 2


def test_a_new_memory_ledger_without_create_holds_no_ledger() -> None:
    with pytest.raises(LedgerError, match="holds no eventcron ledger"):
        Ledger.open("sqlite://", create=False)
