"""Firing records who fired or skipped each occurrence, and says so in its log fields.

In-process, against an in-memory ledger and a fake clock (see ``test_firing.py``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.campaign import Rules
from eventcron.clock import to_ms
from eventcron.config import Config
from eventcron.firing import plan
from eventcron.firing.firer import Firer
from eventcron.firing.pipeline import Firing
from eventcron.firing.recovery import SKIP_LINES
from eventcron.ledger import PASSED_BEFORE_LOAD, Ledger, LedgerThread
from eventcron.metrics import Metrics
from tests.unit.fakes import FakeClock, ledger_thread, write_config

LATEST = "a later occurrence was fired instead (catch_up_mode latest)"
TOO_OLD = "missed by more than catch_up (5m)"


def minute(n: int) -> datetime:
    return datetime(2026, 12, 1, 10, n, tzinfo=UTC)


def every_minute(sid: str) -> str:
    return f"- {{id: {sid}, event_type: 'e:{sid}', every: 1m, users: [u1, u2]}}\n"


async def started(db: LedgerThread, clock: FakeClock, cfg: Config, instance: str,
                  metrics: Metrics | None = None) -> Firing:
    firing = Firing(db, clock, cfg, on_enqueued=lambda: None, metrics=metrics or Metrics(),
                    instance=instance, rules=Rules(cfg))
    await firing.prepare(clock.now())
    await firing.recover(clock.now())
    return firing


Records = dict[datetime, tuple[str, str | None]]


def who(ledger: Ledger, sid: str) -> Records:
    """Return ``nominal -> (status, instance)`` of a schedule's fire records."""
    return {datetime.fromtimestamp(f.scheduled_for / 1000, UTC): (f.status, f.instance)
            for f in ledger.fires_of(sid)}


def fields(caplog: pytest.LogCaptureFixture, start: str, *names: str) -> list[tuple[object, ...]]:
    """Return the named structured fields of each log line whose message starts so."""
    return [tuple(getattr(r, n, None) for n in names) for r in caplog.records
            if r.getMessage().startswith(start)]


def test_catch_up_fires_and_skips_as_the_instance_that_started(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    cfg = write_config(tmp_path, every_minute("s"),
                       delivery="catch_up: 5m\ncatch_up_mode: latest")
    clock = FakeClock()
    metrics = Metrics()

    async def scenario() -> Records:
        async with ledger_thread(memory_ledger) as db:
            await (await started(db, clock, cfg, "first")).stop()  # 10:00:30, then down
            clock.t = minute(10) + timedelta(seconds=30)
            await started(db, clock, cfg, "second", metrics)
            return who(memory_ledger, "s")

    log = asyncio.run(scenario())
    assert log[minute(0)] == ("skipped", "first")  # passed before the first start's load
    assert {log[minute(n)] for n in range(1, 10)} == {("skipped", "second")}
    assert log[minute(10)] == ("fired", "second")
    skips = fields(caplog, "skipped s@UTC", "schedule", "occurrence", "reason")
    assert ("s", "2026-12-01T10:01:00Z", TOO_OLD) in skips
    assert ("s", "2026-12-01T10:09:00Z", LATEST) in skips
    assert len(skips) == 9
    assert fields(caplog, "fired s@UTC", "schedule", "occurrence", "timezone", "rows") == [
        ("s", "2026-12-01T10:10:00Z", "UTC", 2)]
    passed = fields(caplog, "schedule s: its occurrence", "schedule", "occurrence", "reason")
    assert passed == [("s", "2026-12-01T10:00:00Z", PASSED_BEFORE_LOAD)]
    assert (f'eventcron_last_fire_timestamp_seconds{{schedule="s"}} '
            f'{minute(10).timestamp():.7e}') in metrics.render().decode()


def test_many_skips_are_logged_the_latest_one_by_one_and_the_rest_counted(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    cfg = write_config(tmp_path, every_minute("s"), delivery="catch_up: 1m\ncatch_up_mode: none")
    clock = FakeClock()

    async def scenario() -> Records:
        async with ledger_thread(memory_ledger) as db:
            await (await started(db, clock, cfg, "first")).stop()
            clock.t = minute(40) + timedelta(seconds=30)  # 40 missed, every one skipped
            await started(db, clock, cfg, "second")
            return who(memory_ledger, "s")

    log = asyncio.run(scenario())
    assert sum(1 for _, i in log.values() if i == "second") == 40
    # 39 too old (the latest SKIP_LINES one by one, the rest counted), 1 for the mode.
    one_by_one = fields(caplog, "skipped s@UTC at", "occurrence", "reason")
    assert len(one_by_one) == SKIP_LINES + 1
    assert one_by_one[-1] == ("2026-12-01T10:40:00Z", "catch_up_mode is none")
    older = 39 - SKIP_LINES
    assert fields(caplog, "skipped", "schedule", "occurrence", "skipped")[0] == (
        "s", f"2026-12-01T10:{older:02d}:00Z", older)
    assert len(caplog.records) < 20  # not one line per skip


def test_retiring_and_retiming_write_the_instance_too(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    daily = "- {{id: s, event_type: 'e:s', cron: '0 {hour} * * *', users: [u1]}}\n"
    cfg = write_config(tmp_path, daily.format(hour=9) + every_minute("gone"))
    clock = FakeClock()  # 10:00:30

    async def scenario() -> tuple[Records, Records]:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg, "me")
            # A fire of `gone` a crash cut short, then `gone` leaves the plan: it is closed.
            await db.call(memory_ledger.begin_fire, "gone", "UTC", to_ms(minute(5)),
                          to_ms(clock.now()), instance="crashed")
            retimed = write_config(tmp_path, daily.format(hour=10), name="retimed.yaml")
            await firing.configure(retimed, clock.now(), Rules(retimed))
            return who(memory_ledger, "s"), who(memory_ledger, "gone")

    s, gone = asyncio.run(scenario())
    assert s == {minute(0): ("skipped", "me")}  # passed before the retimed schedule's load
    assert gone[minute(5)] == ("skipped", "me")


def test_a_fire_by_hand_records_its_own_identity(memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("s"))
    (job,) = plan.jobs(cfg)

    async def scenario() -> Records:
        async with ledger_thread(memory_ledger) as db:
            daemon = Firer(db, FakeClock(), cfg.delivery, lambda: None, instance="daemon")
            hand = Firer(db, FakeClock(), cfg.delivery, lambda: None, instance="by hand")
            await daemon.fire(job, minute(1))
            await hand.fire(job, minute(1), by_hand=True)  # joined: the record stays
            await hand.fire(job, minute(2), by_hand=True)  # its own
            return who(memory_ledger, "s")

    assert asyncio.run(scenario()) == {minute(1): ("fired", "daemon"),
                                       minute(2): ("fired", "by hand")}
