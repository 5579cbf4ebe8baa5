"""Retention pruning runs in short steps that let other ledger calls through between them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import inspect, text

from eventcron.ledger import (
    PRUNE_BATCH,
    PRUNE_START,
    Claimed,
    Instance,
    Ledger,
    LedgerThread,
    NewRow,
    PruneAt,
    Result,
)

T0 = 1_790_000_000_000  # ms: a fixed "now"
BEFORE, HORIZON = T0 + 1, T0 + 5_000  # rows changed before T0+1, occurrences before T0+5s


def rows(n: int, schedule: str, at: int = T0) -> list[NewRow]:
    return [NewRow(schedule, f"u{i}", "e:t", at, "{}", at, at + 3_600_000) for i in range(n)]


def deliver(ledger: Ledger, n: int, schedule: str = "old") -> None:
    """Add ``n`` rows delivered at T0 of an occurrence at T0: old enough to prune."""
    ledger.enqueue(rows(n, schedule), T0)
    claimed = ledger.claim("me", T0, n, 30_000)
    ledger.record([Result(c.id, "delivered", 1, T0, 200, None) for c in claimed], "me", T0)


class Gated(Ledger):
    """A real ledger that logs its prune steps and holds the first until ``go`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.log: list[tuple[str, int]] = []
        self.first_step = threading.Event()
        self.go = threading.Event()

    def prune_step(self, before: int, refire_horizon: int, at: PruneAt = PRUNE_START, *,
                   batch: int = PRUNE_BATCH) -> tuple[int, PruneAt | None]:
        if not self.first_step.is_set():
            self.first_step.set()
            assert self.go.wait(30)
        n, following = super().prune_step(before, refire_horizon, at, batch=batch)
        self.log.append(("prune", n))
        return n, following

    def logged_claim(self) -> list[Claimed]:
        self.log.append(("claim", 0))
        return self.claim("me", T0 + 60_000, 10, 30_000)


@pytest.fixture
def gated(ledger_url: str) -> Iterator[Gated]:
    ledger = Gated.open(ledger_url)
    assert isinstance(ledger, Gated)
    yield ledger
    ledger.close()


def test_a_call_made_during_a_prune_runs_between_its_steps(gated: Gated) -> None:
    deliver(gated, 50)
    gated.enqueue(rows(1, "live", at=T0 + 60_000), T0)

    async def scenario() -> tuple[list[Claimed], int]:
        db = LedgerThread(gated)
        pruning = asyncio.ensure_future(db.prune(BEFORE, HORIZON, batch=5, step_seconds=None))
        # The first step holds the ledger thread: a claim made now queues behind it.
        assert await asyncio.to_thread(gated.first_step.wait, 30)
        claiming = asyncio.ensure_future(db.call(gated.logged_claim))
        await asyncio.sleep(0)  # the claim is submitted to the thread
        gated.go.set()
        claimed = await claiming
        return claimed, await pruning

    claimed, deleted = asyncio.run(scenario())
    assert deleted == 50 and len(claimed) == 1
    steps = [n for kind, n in gated.log if kind == "prune"]
    assert len(steps) >= 10 and max(steps) <= 5 and sum(steps) == 50
    # Right after the step it waited for, not after the whole prune.
    assert gated.log[:2] == [("prune", 5), ("claim", 0)]
    assert gated.counts()["delivered"] == 0


def test_steps_walk_past_rows_that_are_kept(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    try:
        # Older than every prunable row, and never pruned: pending rows, a whole batch of them.
        ledger.enqueue(rows(7, "waiting"), T0 - 1_000)
        deliver(ledger, 6)
        for i in range(7):
            ledger.record_skipped("old", "UTC", [T0 - 60_000 * (i + 1)], "too old", T0)
        ledger.begin_fire("interrupted", "UTC", T0 - 1, T0)

        async def prune() -> int:
            db = LedgerThread(ledger)
            return await db.prune(BEFORE, HORIZON, batch=2, step_seconds=None)

        assert asyncio.run(prune()) == 6
        assert ledger.counts() == {"pending": 7, "delivered": 0, "failed": 0, "expired": 0,
                                   "cancelled": 0, "suppressed": 0}
        assert ledger.fires_of("old") == []  # walked in steps of two as well
        assert [f.status for f in ledger.fires_of("interrupted")] == ["firing"]
    finally:
        ledger.close()


def test_one_step_looks_at_no_more_rows_than_its_batch(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    try:
        deliver(ledger, 10)
        n, at = ledger.prune_step(BEFORE, HORIZON, batch=4)
        assert n == 4 and at is not None and at.table == "deliveries"
        assert ledger.counts()["delivered"] == 6
        steps: list[Any] = []
        while at is not None:
            n, at = ledger.prune_step(BEFORE, HORIZON, at, batch=4)
            steps.append(n)
        assert steps[:2] == [4, 2] and sum(steps) == 6
    finally:
        ledger.close()


def test_the_unfinished_fires_index_is_added_to_an_existing_ledger(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_fires_firing"))
    ledger.close()
    ledger = Ledger.open(ledger_url)
    try:
        names = {ix["name"] for ix in inspect(ledger.engine).get_indexes("fires")}
        assert "ix_fires_firing" in names
    finally:
        ledger.close()


def test_heartbeats_of_instances_gone_longer_than_the_retention_are_pruned(
        ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    try:
        def beat(name: str, last_seen: int) -> None:
            ledger.heartbeat(Instance(name, "h", 1, "0.1.0", last_seen - 10, last_seen,
                                      last_seen, False, "sha"))

        beat("gone", T0 - 1)
        beat("recent", T0 + 1)
        ledger.prune(BEFORE - 1, HORIZON)
        assert [i.name for i in ledger.instances()] == ["recent"]
    finally:
        ledger.close()
