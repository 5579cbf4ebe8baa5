"""Firing in-process: occurrences handed over to the ledger, caught up, retired, held back.

The clock is fake and APScheduler is never started: each test calls ``handoff`` as the
clock would, at the lead before the nominal time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eventcron.campaign import Rules
from eventcron.clock import to_ms
from eventcron.config import Config
from eventcron.config.audience import AudienceError
from eventcron.firing import plan
from eventcron.firing.firer import Enqueued, Firer
from eventcron.firing.pipeline import Change, Firing
from eventcron.ledger import PASSED_BEFORE_LOAD, Filters, Ledger, LedgerThread, event_id
from eventcron.metrics import Metrics
from tests.unit.fakes import T0, FakeClock, expiries, ledger_thread, until, write_config

LEAD = timedelta(seconds=2)
LATEST = "a later occurrence was fired instead (catch_up_mode latest)"
RETIRED = "schedule removed or disabled"


def minute(n: int) -> datetime:
    """The n-th whole minute after 10:00 on T0's day (T0 is 10:00:30)."""
    return datetime(2026, 12, 1, 10, n, tzinfo=UTC)


def every_minute(sid: str, users: str = "[u1]") -> str:
    return f"- {{id: {sid}, event_type: 'e:{sid}', every: 1m, users: {users}}}\n"


def fire_log(ledger: Ledger, sid: str) -> dict[datetime, tuple[str, str | None]]:
    """Return ``nominal -> (status, reason)`` of a schedule's fire records."""
    return {datetime.fromtimestamp(f.scheduled_for / 1000, UTC): (f.status, f.reason)
            for f in ledger.fires_of(sid)}


def watermark(ledger: Ledger, key: str) -> int:
    return ledger.job_states()[key][1]


async def started(db: LedgerThread, clock: FakeClock, cfg: Config) -> Firing:
    """A Firing prepared and recovered at the clock's time, as the daemon starts one."""
    firing = Firing(db, clock, cfg, on_enqueued=lambda: None, metrics=Metrics(),
                    rules=Rules(cfg))
    await firing.prepare(clock.now())
    await firing.recover(clock.now())
    return firing


def hand_over(firing: Firing, clock: FakeClock, key: str, *nominals: datetime) -> None:
    """Hand occurrences over as the clock does, its lead before the (last) nominal time."""
    clock.t = max(clock.t, nominals[-1] - LEAD)
    for t in nominals:
        firing.handoff(key, t)


def test_a_fire_makes_one_row_per_user_with_its_id_and_times(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
        - id: promo
          event_type: promo:sent
          every: 1m
          users: [u1, u2, {id: u3, timezone: Europe/Berlin}]
          data: {who: "${app_user_id}", at: "${scheduled_for}"}
        """, delivery="expires_after: 1h")
    (job,) = plan.jobs(cfg)
    nominal, at = minute(1), to_ms(minute(1))
    woken: list[int] = []

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: woken.append(1))
            assert await firer.fire(job, nominal) == Enqueued(3, 3)
            times = await db.call(expiries, memory_ledger, "promo")
            found = {r.app_user_id: r for r in memory_ledger.rows(Filters())}
            assert fire_log(memory_ledger, "promo") == {nominal: ("fired", None)}
            assert watermark(memory_ledger, job.key) == at
        assert times == dict.fromkeys(("u1", "u2", "u3"), (at, at, at + 3_600_000))
        for user, row in found.items():
            assert row.event_id == event_id("promo", user, "promo:sent", at)
            assert json.loads(row.data) == {"who": user, "at": "2026-12-01T10:01:00Z"}
        assert woken  # the dispatcher is told rows are there

    asyncio.run(scenario())


def test_firing_an_occurrence_again_adds_nothing(memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("s", "[u1, u2]"))
    (job,) = plan.jobs(cfg)

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None)
            assert await firer.fire(job, minute(1)) == Enqueued(2, 2)
            assert await firer.fire(job, minute(1)) == Enqueued(0, 0)  # already fired
            # By hand it goes through every user again, and adds only what is missing.
            assert await firer.fire(job, minute(1), by_hand=True) == Enqueued(2, 0)
            assert len(memory_ledger.rows(Filters())) == 2

    asyncio.run(scenario())


def test_small_audiences_due_together_are_fired_in_one_write(
        memory_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path, every_minute("a", "[u1, u2]") + every_minute("b", "[u3]"))
    clock = FakeClock()
    batches: list[list[str]] = []

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            fire_together = firing.firer.fire_together

            async def spy(fires: list[tuple[plan.Job, datetime]]) -> int:
                batches.append([job.key for job, _ in fires])
                return await fire_together(fires)

            monkeypatch.setattr(firing.firer, "fire_together", spy)
            hand_over(firing, clock, "a@UTC", minute(1))
            hand_over(firing, clock, "b@UTC", minute(1))
            await firing.settle()
            assert batches == [["a@UTC", "b@UTC"]]
            assert firing.fires == 2
            for sid, users in (("a", 2), ("b", 1)):
                assert fire_log(memory_ledger, sid)[minute(1)] == ("fired", None)
                assert memory_ledger.counts(sid)["pending"] == users
                assert watermark(memory_ledger, f"{sid}@UTC") == to_ms(minute(1))

    asyncio.run(scenario())


def test_a_late_handoff_fires_only_the_latest_and_records_the_others_skipped(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("s"), delivery="catch_up_mode: latest")
    clock = FakeClock()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            clock.t = minute(3) + timedelta(seconds=30)  # the machine slept
            hand_over(firing, clock, "s@UTC", minute(1), minute(2), minute(3))
            await firing.settle()
            assert fire_log(memory_ledger, "s") == {
                minute(0): ("skipped", PASSED_BEFORE_LOAD),  # from the start at 10:00:30
                minute(1): ("skipped", LATEST), minute(2): ("skipped", LATEST),
                minute(3): ("fired", None)}
            assert [r.scheduled_for for r in memory_ledger.rows(Filters())] == [
                to_ms(minute(3))]

    asyncio.run(scenario())


def test_a_late_catch_up_skips_a_schedule_a_reload_removed_meanwhile(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("a") + every_minute("b"))
    clock = FakeClock()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            entered, gate = asyncio.Event(), asyncio.Event()
            fire = firing.firer.fire

            async def held(job: plan.Job, nominal: datetime, why: str = "",
                           **kw: Any) -> Enqueued:
                if job.schedule.id == "a":
                    entered.set()
                    await gate.wait()  # a's catch-up is under way while the reload runs
                return await fire(job, nominal, why, **kw)

            firing.firer.fire = held  # type: ignore[method-assign]
            clock.t = minute(3) + timedelta(seconds=30)  # the machine slept
            firing.handoff("a@UTC", minute(3))
            firing.handoff("b@UTC", minute(3))
            await asyncio.wait_for(entered.wait(), 5)
            edited = write_config(tmp_path, every_minute("a"), name="a.yaml")
            await firing.configure(edited, clock.now(), Rules(edited))
            gate.set()
            await firing.settle()
            assert fire_log(memory_ledger, "a")[minute(3)] == ("fired", None)
            assert minute(3) not in fire_log(memory_ledger, "b")  # removed: not caught up
            assert memory_ledger.counts("b")["pending"] == 0
            assert "b@UTC" not in memory_ledger.job_states()

    asyncio.run(scenario())


def test_after_downtime_recent_occurrences_fire_and_older_ones_are_skipped(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("s", "[u1, u2]"),
                       delivery="catch_up: 5m\ncatch_up_mode: all")
    clock = FakeClock()
    too_old = "missed by more than catch_up (5m)"

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            await (await started(db, clock, cfg)).stop()  # ran at 10:00:30, then went down
            clock.t = minute(10) + timedelta(seconds=30)
            await started(db, clock, cfg)
            log = fire_log(memory_ledger, "s")
            assert {t: log[t] for t in map(minute, range(1, 11))} == {
                **{minute(n): ("skipped", too_old) for n in range(1, 6)},
                **{minute(n): ("fired", None) for n in range(6, 11)}}
            assert memory_ledger.counts("s")["pending"] == 5 * 2
            assert watermark(memory_ledger, "s@UTC") == to_ms(clock.t)

    asyncio.run(scenario())


def test_removing_a_schedule_cancels_its_pending_rows(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, every_minute("a", "[u1, u2]") + every_minute("b"))
    clock = FakeClock()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            hand_over(firing, clock, "a@UTC", minute(1))
            hand_over(firing, clock, "b@UTC", minute(1))
            await firing.settle()
            smaller = write_config(tmp_path, every_minute("b"), name="smaller.yaml")
            change = await firing.configure(smaller, clock.now(), Rules(smaller))
            assert change == Change(jobs=1, added=0, retimed=0, removed=1, cancelled=2)
            assert not firing.is_active("a")
            rows = memory_ledger.rows(Filters(schedule=("a",)))
            assert [(r.status, r.last_error) for r in rows] == [("cancelled", RETIRED)] * 2
            assert memory_ledger.counts("b")["pending"] == 1
            assert "a@UTC" not in memory_ledger.job_states()  # back later: starts afresh

    asyncio.run(scenario())


def test_a_retimed_schedule_records_the_occurrence_its_load_passed(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    daily = "- {{id: s, event_type: 'e:s', cron: '0 {hour} * * *', users: [u1]}}"
    cfg = write_config(tmp_path, daily.format(hour=9))
    clock = FakeClock()  # 10:00:30: 09:00 is more than catch_up (1h) ago, 10:00 is not

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            assert fire_log(memory_ledger, "s") == {}
            retimed = write_config(tmp_path, daily.format(hour=10), name="retimed.yaml")
            change = await firing.configure(retimed, clock.now(), Rules(retimed))
            assert change == Change(jobs=1, added=0, retimed=1, removed=0)
            assert fire_log(memory_ledger, "s") == {minute(0): ("skipped", PASSED_BEFORE_LOAD)}
            (job,) = plan.jobs(retimed)
            assert memory_ledger.job_states()["s@UTC"] == (job.schedule.fingerprint(), to_ms(T0))
            assert memory_ledger.rows(Filters()) == []

    asyncio.run(scenario())


def test_the_watermark_waits_for_an_earlier_occurrence_that_failed(
        memory_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    people = tmp_path / "people.csv"
    people.write_text("app_user_id\nu1\nu2\n")
    cfg = write_config(tmp_path, "- {id: s, event_type: 'e:s', every: 1m, audience: people}",
                       extra="audiences:\n  people: {file: people.csv}\n")
    clock = FakeClock()
    failed: list[datetime] = []
    fired: list[datetime] = []

    def watched(fire: Callable[..., Awaitable[Enqueued]]) -> Callable[..., Awaitable[Enqueued]]:
        async def spy(job: plan.Job, nominal: datetime, *args: Any, **kwargs: Any) -> Enqueued:
            if nominal in failed:
                await asyncio.Event().wait()  # its retry waits for stop(): it stays unfired
            try:
                enqueued = await fire(job, nominal, *args, **kwargs)
            except AudienceError:
                failed.append(nominal)
                raise
            fired.append(nominal)
            return enqueued
        return spy

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            monkeypatch.setattr(firing.firer, "fire", watched(firing.firer.fire))
            people.rename(tmp_path / "away.csv")  # unreadable when 10:01 is due
            hand_over(firing, clock, "s@UTC", minute(1))
            await until(lambda: failed == [minute(1)])
            (tmp_path / "away.csv").rename(people)  # back for 10:02
            hand_over(firing, clock, "s@UTC", minute(2))
            await until(lambda: fired == [minute(2)])
            assert watermark(memory_ledger, "s@UTC") == to_ms(minute(1)) - 1
            await firing.stop()  # 10:01 still not fired: the next start must see it

            clock.t = minute(2) + timedelta(seconds=30)
            await started(db, clock, cfg)
            assert fire_log(memory_ledger, "s")[minute(1)] == ("fired", None)
            assert memory_ledger.counts("s")["pending"] == 2 * 2
            assert watermark(memory_ledger, "s@UTC") >= to_ms(minute(1))  # held no longer

    asyncio.run(scenario())
