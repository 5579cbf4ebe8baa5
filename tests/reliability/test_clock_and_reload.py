"""Clock jumps (forward past occurrences, and back) and reload storms, while sending."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from eventcron.ledger import Ledger
from eventcron.sink import Faults, Sink
from tests.integration.harness import SECRET, running, write_schedule
from tests.reliability.invariants import check

T0 = datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC)


@pytest.mark.timeout(120)
def test_clock_jumps_forward_then_back(tmp_path: Path) -> None:
    body = """
    schedules:
      - {id: tenmin, event_type: "r:clock", every: 10m, users: [a, b, c]}
    """
    delivery = "catch_up: 1h\ncatch_up_mode: latest\nexpires_after: 12h"

    async def scenario(frozen: object) -> Sink:
        sink = Sink(secret=SECRET)
        await sink.start()
        try:
            async with running(tmp_path, body, delivery=delivery, sink=sink) as run:
                # 10:00 fires normally, half a minute after the start.
                await run.until(lambda: len(run.sink.delivered()) == 3, within=60)
                # Forward three hours: 10:10 ... 13:00 (18 occurrences) were missed.
                frozen.move_to(T0 + timedelta(hours=3, minutes=5))  # type: ignore[attr-defined]
                await run.until(lambda: len(run.sink.delivered()) == 6, within=20)
                await asyncio.sleep(2)  # anything more would arrive now
                assert len(run.sink.delivered()) == 6
            # Back to just before 13:00, which was sent: a new start plans it again, and it
            # must not be sent twice.
            frozen.move_to(T0 + timedelta(hours=3, seconds=20))  # type: ignore[attr-defined]
            async with running(tmp_path, body, delivery=delivery, sink=sink):
                await asyncio.sleep(15)  # 13:00 comes round again 10 s after the start
        finally:
            await sink.stop()
        return sink

    with freeze_time(T0, tick=True, real_asyncio=True) as frozen:
        sink = asyncio.run(scenario(frozen))
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}")
    try:
        fires = ledger.fires_of("tenmin", limit=100)
    finally:
        ledger.close()
    fired = sorted(f.scheduled_for for f in fires if f.status == "fired")
    skipped = [f for f in fires if f.status == "skipped"]
    as_hours = [datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M") for t in fired]
    assert as_hours == ["10:00", "13:00"]  # catch-up latest: only the newest missed one
    assert len(skipped) == 17 and all(f.reason for f in skipped)
    keys = Counter(r.idempotency_key for r in sink.delivered())
    assert len(keys) == 6 and max(keys.values()) == 1  # nothing twice, even going back
    assert len([f for f in fires if f.scheduled_for == fired[-1]]) == 1


@pytest.mark.timeout(180)
def test_a_reload_storm_while_sending(tmp_path: Path) -> None:
    users = 1000
    names = ", ".join(f"s{i:04d}" for i in range(users))
    at = (datetime.now(UTC) + timedelta(seconds=2.5)).isoformat()
    campaign = f"  - {{id: campaign, event_type: \"r:storm\", at: \"{at}\", users: [{names}]}}\n"

    def version(i: int) -> str:
        if i % 2:
            return "schedules:\n" + campaign + "  - {id: broken, event_type: [\n"  # invalid
        return ("schedules:\n" + campaign
                + f"  - {{id: extra{i}, event_type: \"r:extra\", every: 1h, users: [x]}}\n")

    async def scenario() -> tuple[Sink, int, int]:
        sink = Sink(secret=SECRET, faults=Faults(latency=0.005))
        await sink.start()
        applied = refused = 0
        try:
            async with running(tmp_path, version(0), sink=sink) as run:
                await run.until(lambda: len(run.sink.delivered()) >= 20, within=30)
                for i in range(1, 101):
                    write_schedule(tmp_path, sink.url, version(i))
                    if await run.daemon.reload("storm"):
                        applied += 1
                    else:
                        refused += 1
                    await asyncio.sleep(0.01)
                await run.until(lambda: sum(1 for r in run.rows() if r.status == "delivered")
                                == users, within=90)
                assert not run.task.done()
        finally:
            await sink.stop()
        return sink, applied, refused

    sink, applied, refused = asyncio.run(scenario())
    assert (applied, refused) == (50, 50)
    report = check(f"sqlite:///{tmp_path / 'eventcron.db'}",
                   [("campaign", f"s{i:04d}") for i in range(users)],
                   [(r.idempotency_key, r.status, r.app_user_id) for r in sink.records],
                   repeats="never")
    print(f"\n100 reloads ({applied} applied, {refused} refused) while sending: "
          f"{report.line()}")
    assert report.delivered == users
