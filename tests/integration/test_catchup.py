"""Catch-up after downtime, end to end, with the clock injected.

APScheduler reads the wall clock itself, so the clock is moved with freezegun (ticking,
asyncio on real time); eventcron's own clock reads the same frozen time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from eventcron.ledger import Filters, Ledger
from eventcron.testing import Sink
from tests.integration.harness import SECRET, running

T0 = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)  # first start
T1 = T0 + timedelta(hours=5)  # restart after five hours down: 11:00 ... 15:00 were missed

BODY = """
schedules:
  - {id: hourly, event_type: "a:b", every: 1h, users: [u_1]}
"""


def hours(times: list[int]) -> list[int]:
    return sorted(datetime.fromtimestamp(t / 1000, UTC).hour for t in times)


# 10:00 passed before the schedule was first loaded (at 10:30): recorded as skipped then.
@pytest.mark.parametrize(("mode", "fired", "skipped"), [
    ("latest", [15], [10, 11, 12, 13, 14]),
    ("all", [13, 14, 15], [10, 11, 12]),
    ("none", [], [10, 11, 12, 13, 14, 15]),
])
def test_catch_up_after_downtime(tmp_path: Path, mode: str, fired: list[int],
                                 skipped: list[int]) -> None:
    delivery = f"catch_up: 3h\ncatch_up_mode: {mode}\nexpires_after: 12h"

    async def first_start(sink: Sink) -> None:
        async with running(tmp_path, BODY, delivery=delivery, sink=sink):
            pass  # a new schedule starts from now: nothing fires, the time is recorded

    async def restart(sink: Sink) -> None:
        async with running(tmp_path, BODY, delivery=delivery, sink=sink) as run:
            # Ready means the catch-up is decided and enqueued: once no row is pending,
            # nothing more can arrive.
            await run.until(lambda: len(run.sink.delivered()) == len(fired)
                            and all(r.status != "pending" for r in run.rows()), within=20)

    async def scenario() -> tuple[Sink, str]:
        sink = Sink(secret=SECRET)
        await sink.start()
        try:
            with freeze_time(T0, tick=True, real_asyncio=True):
                await first_start(sink)
            assert sink.records == []
            with freeze_time(T1, tick=True, real_asyncio=True):
                await restart(sink)
        finally:
            await sink.stop()
        return sink, f"sqlite:///{tmp_path / 'eventcron.db'}"

    sink, url = asyncio.run(scenario())
    ledger = Ledger.open(url)
    try:
        records = ledger.fires_of("hourly")
        rows = ledger.rows(Filters())
    finally:
        ledger.close()
    assert hours([f.scheduled_for for f in records if f.status == "fired"]) == fired
    assert hours([f.scheduled_for for f in records if f.status == "skipped"]) == skipped
    assert all(f.reason for f in records if f.status == "skipped")
    assert hours([r.scheduled_for for r in rows]) == fired
    assert sorted(r.status for r in rows) == ["delivered"] * len(fired)
    assert len(sink.delivered()) == len(fired)
