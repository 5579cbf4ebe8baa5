"""Pruning: claims and records while retention deletes a million old rows, against none.

Run with the others (`python -m bench --only prune`) or alone: `python -m bench.prune
[ROWS]` (default 1,000,000) prints the same table. The prune runs as the daemon runs it
(`LedgerThread.prune`: short steps on the one ledger thread); meanwhile a loop claims and
records rows through that thread back to back, as a busy dispatcher does, and each call
is timed from its submission to its answer, so a call that waited behind a prune step
shows it. The baseline is the same loop, as many calls, in the same run, with no prune
running. A reference runs the same prune as one ledger call, as it ran before it was cut
into steps.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import Figure
from eventcron.clock import ms
from eventcron.ledger import (
    PRUNE_BATCHES,
    PRUNE_STEP_SECONDS,
    Ledger,
    LedgerThread,
    Result,
    event_id,
)

TARGET_MS = 100.0  # the longest a claim or record may wait while a prune runs
USERS = 1_000  # per occurrence: an hourly campaign, as the old rows were written
POOL = 10_000  # pending rows the claim/record loop goes round
CLAIM = 32  # rows per claim: the default endpoint.concurrency
OWNER = "bench-prune"
RETENTION_MS = 30 * 86_400_000  # the default delivery.retention
CATCH_UP_MS = 3_600_000  # the default delivery.catch_up
DAY_MS = 86_400_000


def build(path: Path, rows: int, now: int) -> None:
    """Write a ledger of ``rows`` delivered rows older than retention, plus POOL pending.

    The old rows are an hourly campaign of USERS users, each row delivered within a
    minute of its time (rows are enqueued and delivered in about the same order), with
    one fire record per occurrence.
    """
    url = f"sqlite:///{path}"
    Ledger.open(url).close()
    occurrences = -(-rows // USERS)
    start = now - RETENTION_MS - 10 * DAY_MS - occurrences * 3_600_000
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    insert = ("INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type,"
              " scheduled_for, data, status, attempts, next_attempt_at, expires_at,"
              " created_at, updated_at, delivered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
    conn.execute("BEGIN")
    for first in range(0, rows, 100_000):
        batch = []
        for i in range(first, min(rows, first + 100_000)):
            at = start + (i // USERS) * 3_600_000
            user = f"u{i % USERS:05d}"
            done = at + rng.randrange(60_000)
            batch.append((event_id("campaign", user, "bench:old", at), "campaign", user,
                          "bench:old", at, '{"plan":"p1"}', "delivered", 1, at,
                          at + 6 * 3_600_000, at - 2_000, done, done))
        conn.executemany(insert, batch)
    conn.execute("INSERT INTO fires (schedule_id, zone, scheduled_for, status, users,"
                 " updated_at) SELECT DISTINCT schedule_id, 'UTC', scheduled_for, 'fired',"
                 " ?, scheduled_for + 60000 FROM deliveries", (USERS,))
    conn.executemany(insert, [
        (event_id("busy", f"p{i:05d}", "bench:now", now), "busy", f"p{i:05d}", "bench:now",
         now, "{}", "pending", 0, now, now + 365 * DAY_MS, now, now, None)
        for i in range(POOL)])
    conn.commit()
    conn.close()


async def claims_and_records(db: LedgerThread, *, until: Callable[[], bool] | None = None,
                             count: int | None = None) -> list[float]:
    """Claim and record back to back; return each call's seconds, waiting included.

    Outcomes are retries due at once, so the pool never runs dry; runs until ``until()``
    holds or ``count`` calls were made.
    """
    took: list[float] = []
    while not (until is not None and until()) and not (count is not None
                                                         and len(took) >= count):
        now = ms(time.time())
        began = time.perf_counter()
        got = await db.call(db.ledger.claim, OWNER, now, CLAIM, 60_000)
        claimed = time.perf_counter()
        results = [Result(c.id, "pending", c.attempts + 1, now, 503, "HTTP 503") for c in got]
        await db.call(db.ledger.record, results, OWNER, now)
        took += [claimed - began, time.perf_counter() - claimed]
    return took


@dataclass(frozen=True)
class Measured:
    """One prune with the loop running beside it, and the loop alone after."""

    during: list[float]  # seconds per call
    alone: list[float]
    prune_seconds: float
    deleted: int


async def measure(path: Path, *, in_steps: bool) -> Measured:
    """Prune the ledger at ``path`` with calls running beside it, then the calls alone."""
    db = LedgerThread(Ledger.open(f"sqlite:///{path}"))
    try:
        now = ms(time.time())
        before, horizon = now - RETENTION_MS, now - CATCH_UP_MS
        await claims_and_records(db, count=200)  # warm: caches, statements, the WAL
        began = time.perf_counter()
        if in_steps:
            pruning = asyncio.ensure_future(db.prune(before, horizon))
        else:
            pruning = asyncio.ensure_future(db.call(db.ledger.prune, before, horizon))
        during = await claims_and_records(db, until=pruning.done)
        deleted = await pruning
        took = time.perf_counter() - began
        alone = await claims_and_records(db, count=len(during))
    finally:
        await asyncio.to_thread(db.close)
    return Measured(during, alone, took, deleted)


def p99(values: list[float]) -> float:
    """The 99th percentile (the largest value below 100 samples)."""
    if len(values) < 100:
        return max(values)
    return statistics.quantiles(values, n=100)[98]


def run(rows: int) -> list[Figure]:
    """Build the ledger, prune it in steps, then as one call; return the figures."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-prune-"))
    try:
        built = folder / "built.db"
        build(built, rows, ms(time.time()))
        shutil.copy(built, folder / "steps.db")
        shutil.copy(built, folder / "whole.db")
        steps = asyncio.run(measure(folder / "steps.db", in_steps=True))
        whole = asyncio.run(measure(folder / "whole.db", in_steps=False))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    least, most = PRUNE_BATCHES
    longest, base_longest = max(steps.during) * 1000, max(steps.alone) * 1000
    tail, base_tail = p99(steps.during) * 1000, p99(steps.alone) * 1000
    baseline = f"no prune running: longest {base_longest:.1f} ms, p99 {base_tail:.1f} ms"
    ok = steps.deleted == rows and whole.deleted == rows
    calls = (f"{len(steps.during):,} claim and record calls ({CLAIM} rows each) during the"
             f" prune, as many after it; median {statistics.median(steps.during) * 1000:.1f}"
             f" ms during, {statistics.median(steps.alone) * 1000:.1f} ms after")
    return [
        Figure(f"prune of {rows:,} old rows: longest claim/record call", longest, "ms",
               f"<= {TARGET_MS:g} ms", longest <= TARGET_MS and ok, baseline,
               base_longest / longest, note=calls),
        Figure(f"prune of {rows:,} old rows: p99 claim/record call", tail, "ms", "", None,
               baseline, base_tail / tail),
        Figure(f"prune of {rows:,} old rows: total time, calls running beside it",
               steps.prune_seconds, "s", "", None,
               note=f"{steps.deleted:,} rows deleted in steps of {least:,} to {most:,} rows"
                    f" sized to take {PRUNE_STEP_SECONDS * 1000:g} ms each; the same prune"
                    f" as one call took {whole.prune_seconds:.1f} s"),
        Figure("reference: the same prune as one ledger call: longest claim/record call",
               max(whole.during) * 1000, "ms", "", None, baseline,
               base_longest / (max(whole.during) * 1000),
               note=f"{whole.deleted:,} rows deleted; {len(whole.during):,} calls got"
                    " through during it"),
    ]


if __name__ == "__main__":
    from bench.__main__ import table

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"bench: prune ({size:,}) ...", flush=True)
    figures = run(size)
    print("\n" + table(figures) + "\n")
    print("\n".join(f"- {f.name}: {f.note}" for f in figures if f.note))
