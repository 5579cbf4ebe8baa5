"""Clock jumps (forward past occurrences, and back) and reload storms, while sending."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from freezegun import freeze_time

from eventcron.ledger import PASSED_BEFORE_LOAD, Ledger
from eventcron.testing import Faults, Sink
from tests.integration.harness import SECRET, Running, running, soon, write_schedule
from tests.reliability.invariants import check

T0 = datetime(2026, 11, 20, 9, 59, 45, tzinfo=UTC)  # 10:00 is 15 s after the start
AT = {"10:00": datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
      "12:59:50": datetime(2026, 11, 20, 12, 59, 50, tzinfo=UTC),
      "13:00": datetime(2026, 11, 20, 13, 0, tzinfo=UTC),
      "13:04:30": datetime(2026, 11, 20, 13, 4, 30, tzinfo=UTC)}


def ms_of(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_clock_jumps_forward_then_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventcron.firing")
    body = """
    schedules:
      - {id: tenmin, event_type: "r:clock", every: 10m, users: [a, b, c]}
    """
    delivery = "catch_up: 1h\ncatch_up_mode: latest\nexpires_after: 12h"

    def settled(run: Running, records: int) -> bool:
        """Every occurrence so far is recorded (fired or skipped) and no row is pending."""
        ledger = run.daemon.db.ledger
        return (len(ledger.fires_of("tenmin", limit=100)) == records
                and all(r.status != "pending" for r in run.rows()))

    async def scenario(frozen: object) -> Sink:
        sink = Sink(secret=SECRET)
        await sink.start()
        try:
            async with running(tmp_path, body, delivery=delivery, sink=sink) as run:
                # 10:00 fires normally, a quarter of a minute after the start.
                assert run.daemon.firing.clockwork.next_fire("tenmin@UTC") == AT["10:00"], (
                    "the daemon started after 10:00")
                await run.until(lambda: len(run.sink.delivered()) == 3, within=60)
                before = len(run.daemon.db.ledger.fires_of("tenmin", limit=100))
                # Forward to 13:04:30: 10:10 ... 13:00 (18 occurrences) were missed.
                frozen.move_to(AT["13:04:30"])  # type: ignore[attr-defined]
                await run.until(lambda: len(run.sink.delivered()) == 6, within=20)
                # Nothing more can come once all 18 are recorded and no row is pending.
                await run.until(lambda: settled(run, before + 18), within=20)
                assert len(run.sink.delivered()) == 6
            # Back to 12:59:50, before 13:00, which was sent: a new start plans it again,
            # and it must not be sent twice.
            frozen.move_to(AT["12:59:50"])  # type: ignore[attr-defined]
            caplog.clear()
            async with running(tmp_path, body, delivery=delivery, sink=sink) as run:
                # 13:00 comes round again about 10 s after the start: wait until the daemon
                # has tried to fire it (and found it fired), then for anything in flight.
                await run.until(lambda: any(
                    "13:00:00Z was already fired" in r.getMessage() for r in caplog.records),
                    within=60)
                await run.until(lambda: run.daemon.dispatcher.inflight == 0
                                and all(r.status != "pending" for r in run.rows()))
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
    as_hours = [datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M") for t in fired]
    assert as_hours == ["10:00", "13:00"]  # catch-up latest: only the newest missed one
    jumped = [f for f in fires if f.status == "skipped"
              and ms_of(AT["10:00"]) < f.scheduled_for < ms_of(AT["13:00"])]
    assert len(jumped) == 17 and all(f.reason for f in jumped)
    # Before the first start, only the occurrence that passed before the schedule was
    # loaded (09:50) may be recorded, as skipped.
    earlier = [f for f in fires if f.scheduled_for < ms_of(AT["10:00"])]
    assert all(f.status == "skipped" and f.reason == PASSED_BEFORE_LOAD for f in earlier)
    keys = Counter(r.idempotency_key for r in sink.delivered())
    assert len(keys) == 6 and max(keys.values()) == 1  # nothing twice, even going back
    assert len([f for f in fires if f.scheduled_for == fired[-1]]) == 1


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_a_reload_storm_while_sending(tmp_path: Path) -> None:
    users = 1000
    names = ", ".join(f"s{i:04d}" for i in range(users))
    at = soon()
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
