"""Firing under the campaign rules: verdicts per row, occurrences skipped, opt-outs at reload.

In-process on the in-memory ledger with a fake clock, as test_firing.py; the rules come
from real schedule files (``campaign.Rules``), and APScheduler is never started.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.campaign import OPTED_OUT, Rules
from eventcron.clock import to_ms
from eventcron.firing import plan
from eventcron.firing.firer import Enqueued, Firer, render_rows
from eventcron.firing.pipeline import Firing
from eventcron.ledger import Filters, Ledger, Row
from eventcron.metrics import Metrics
from tests.unit.fakes import FakeClock, ledger_thread, write_config
from tests.unit.test_firing import fire_log, hand_over, minute, started, watermark

BERLIN_22 = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)  # 22:00 in Berlin
BERLIN_08 = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, the next morning
QUIET = 'quiet_hours: {from: "21:00", to: "08:00"}'


def by_user(ledger: Ledger, schedule: str | None = None) -> dict[str, Row]:
    filters = Filters(schedule=(schedule,)) if schedule else Filters()
    return {r.app_user_id: r for r in ledger.rows(filters)}


def with_optouts(folder: Path, *users: str) -> str:
    """Write ``optouts.csv`` listing ``users``; return the file key naming it."""
    (folder / "optouts.csv").write_text("app_user_id\n" + "".join(f"{u}\n" for u in users))
    return "suppress: {file: optouts.csv}\n"


def test_users_on_the_suppression_list_get_rows_born_suppressed(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    cfg = write_config(tmp_path, "- {id: s, event_type: 'e:s', every: 1m,"
                                 " users: [u1, u2, u3]}",
                       extra=with_optouts(tmp_path, "u2", "nobody"))
    (job,) = plan.jobs(cfg)
    metrics = Metrics()

    async def scenario() -> dict[str, Row]:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None, metrics=metrics,
                          rules=Rules(cfg))
            assert await firer.fire(job, minute(1)) == Enqueued(3, 3)
            return by_user(memory_ledger)

    rows = asyncio.run(scenario())
    assert {u: (r.status, r.last_error) for u, r in rows.items()} == {
        "u1": ("pending", None), "u2": ("suppressed", OPTED_OUT), "u3": ("pending", None)}
    assert metrics.outcomes["suppressed"] == 1
    (line,) = [r for r in caplog.records if r.getMessage().startswith("fired s@UTC")]
    assert line.getMessage() == ("fired s@UTC at 2026-12-01T10:01:00Z: 3 users enqueued;"
                                 " 1 suppressed by the campaign rules")
    assert (getattr(line, "suppressed", None), getattr(line, "expired", None)) == (1, 0)


def test_an_occurrence_on_a_skip_date_is_recorded_skipped_and_sends_nothing(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    # Two small inline schedules (fired together) and one fired on its own (a CSV audience).
    (tmp_path / "people.csv").write_text("app_user_id\np1\np2\n")
    cfg = write_config(tmp_path, """
        - {id: a, event_type: 'e:a', every: 1m, users: [u1], skip: {dates: [2026-12-01]}}
        - {id: b, event_type: 'e:b', every: 1m, users: [u1]}
        - {id: c, event_type: 'e:c', every: 1m, audience: people,
           skip: {dates: ["2026-11-30..2026-12-02"]}}
        """, extra="audiences:\n  people: {file: people.csv}\n")
    clock = FakeClock()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            for key in ("a@UTC", "b@UTC", "c@UTC"):
                hand_over(firing, clock, key, minute(1))
            await firing.settle()
            assert fire_log(memory_ledger, "a")[minute(1)] == ("skipped", "skip date 2026-12-01")
            assert fire_log(memory_ledger, "c")[minute(1)] == ("skipped", "skip date 2026-12-01")
            assert fire_log(memory_ledger, "b")[minute(1)] == ("fired", None)
            # The watermark moves on as a fire's would: a restart does not catch it up.
            for key in ("a@UTC", "b@UTC", "c@UTC"):
                assert watermark(memory_ledger, key) == to_ms(minute(1))
            assert sorted(r.schedule_id for r in memory_ledger.rows(Filters())) == ["b"]

    asyncio.run(scenario())
    skipped = {r.getMessage(): r for r in caplog.records
               if r.getMessage().startswith("skipped ")}
    line = skipped["skipped a@UTC at 2026-12-01T10:01:00Z: skip date 2026-12-01"]
    assert (line.schedule, line.occurrence, line.timezone, line.reason) == (  # type: ignore[attr-defined]
        "a", "2026-12-01T10:01:00Z", "UTC", "skip date 2026-12-01")
    assert "skipped c@UTC at 2026-12-01T10:01:00Z: skip date 2026-12-01" in skipped


def test_a_skip_is_recorded_once_and_by_hand_the_rows_say_why(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "- {id: a, event_type: 'e:a', every: 1m, users: [u1, u2],"
                                 " skip: {dates: [2026-12-01]}}")
    (job,) = plan.jobs(cfg)

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None, rules=Rules(cfg))
            assert await firer.skip(job, minute(1), "skip date 2026-12-01")
            assert not await firer.skip(job, minute(1), "skip date 2026-12-01")
            assert await firer.fire(job, minute(1)) == Enqueued(0, 0)
            # `eventcron fire` sends a skipped occurrence; the rules still judge each user.
            assert await firer.fire(job, minute(1), by_hand=True) == Enqueued(2, 2)
            assert {(r.status, r.last_error) for r in memory_ledger.rows(Filters())} == {
                ("suppressed", "skip date 2026-12-01")}

    asyncio.run(scenario())


def test_quiet_hours_hold_the_first_attempt_until_the_window_ends_or_expire_it(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    schedules = """
        - {id: long, event_type: 'e:l', cron: '0 22 * * *', timezone: Europe/Berlin,
           users: [u1, {id: u2, timezone: Asia/Tokyo}]}
        - {id: short, event_type: 'e:s', cron: '0 22 * * *', timezone: Europe/Berlin,
           users: [u1], quiet_hours: {from: "21:00", to: "08:00"}}
        - {id: loud, event_type: 'e:d', cron: '0 22 * * *', timezone: Europe/Berlin,
           users: [u1], quiet_hours: none}
        """
    cfg = write_config(tmp_path, schedules, delivery=f"{QUIET}\nexpires_after: 12h")
    short = write_config(tmp_path, schedules, delivery=f"{QUIET}\nexpires_after: 6h",
                         name="short.yaml")
    twelve_hours = 12 * 3_600_000

    async def scenario() -> dict[str, dict[str, Row]]:
        async with ledger_thread(memory_ledger) as db:
            for c, sid in ((cfg, "long"), (short, "short"), (cfg, "loud")):
                job = next(j for j in plan.jobs(c) if j.schedule.id == sid)
                firer = Firer(db, FakeClock(), c.delivery, lambda: None, rules=Rules(c))
                await firer.fire(job, BERLIN_22)
            return {sid: by_user(memory_ledger, sid) for sid in ("long", "short", "loud")}

    found = asyncio.run(scenario())
    long = found["long"]
    assert (long["u1"].status, long["u1"].next_attempt_at) == ("pending", to_ms(BERLIN_08))
    # u2 lives in Tokyo: 22:00 in Berlin is 06:00 there, held until 08:00 Tokyo time.
    assert (long["u2"].status, long["u2"].next_attempt_at) == (
        "pending", to_ms(datetime(2026, 12, 1, 23, 0, tzinfo=UTC)))
    assert long["u1"].scheduled_for == to_ms(BERLIN_22)  # the event id stays the nominal's
    assert to_ms(BERLIN_22) + twelve_hours > to_ms(BERLIN_08)
    (expired,) = found["short"].values()
    assert (expired.status, expired.last_error) == (
        "expired", "quiet hours 21:00-08:00 (Europe/Berlin) last past its expiry"
                   " (delivery.expires_after)")
    (loud,) = found["loud"].values()
    assert (loud.status, loud.next_attempt_at) == ("pending", to_ms(BERLIN_22))


def test_without_rules_the_fast_path_asks_nothing_per_user(
        memory_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path, "- {id: s, event_type: 'e:s', every: 1m, jitter: 30s,"
                                 " users: [u1, u2, {id: u3, timezone: Asia/Tokyo}]}")
    (job,) = plan.jobs(cfg)
    rules = Rules(cfg)
    assert not rules.active

    def never(*_args: object) -> None:
        raise AssertionError("the rules were asked on the fast path")

    monkeypatch.setattr(Rules, "judge", never)
    monkeypatch.setattr(Rules, "occurrence_skip", never)

    async def scenario() -> list[Row]:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None, rules=rules)
            assert firer.judge(job, minute(1)) is None
            assert await firer.fire(job, minute(1)) == Enqueued(3, 3)
            return memory_ledger.rows(Filters())

    rows = asyncio.run(scenario())
    plain = render_rows(job, minute(1), iter(job.schedule.members(job.zone)), 10,
                        cfg.delivery.expires_after)
    assert all((r.zone, r.status, r.reason, r.cap) == (None, "pending", None, None)
               for r in plain)
    assert sorted((r.app_user_id, r.next_attempt_at) for r in plain) == sorted(
        (r.app_user_id, r.next_attempt_at) for r in rows)


def test_an_opt_out_added_at_a_reload_suppresses_pending_rows(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    schedules = "- {id: s, event_type: 'e:s', every: 1m, users: [u1, u2, u3]}"
    cfg = write_config(tmp_path, schedules, extra=with_optouts(tmp_path))
    clock = FakeClock()

    async def scenario() -> list[Row]:
        async with ledger_thread(memory_ledger) as db:
            firing = await started(db, clock, cfg)
            hand_over(firing, clock, "s@UTC", minute(1), minute(2))
            await firing.settle()
            assert memory_ledger.counts("s")["pending"] == 6
            edited = write_config(tmp_path, schedules, name="edited.yaml",
                                  extra=with_optouts(tmp_path, "u1", "u3"))
            change = await firing.configure(edited, clock.now(), Rules(edited))
            assert change.suppressed == 4
            # And at the next start, as at every load: a row enqueued meanwhile (by an
            # instance running the old list) is suppressed too.
            memory_ledger.enqueue(render_rows(plan.jobs(cfg)[0], minute(3),
                                              iter(cfg.schedules[0].members("UTC")), 10,
                                              3600.0), 0)
            again = Firing(db, clock, edited, on_enqueued=lambda: None, metrics=Metrics(),
                           rules=Rules(edited))
            assert (await again.prepare(clock.now())).suppressed == 2
            return memory_ledger.rows(Filters())

    rows = asyncio.run(scenario())
    assert sorted((r.app_user_id, r.status, r.last_error) for r in rows) == sorted(
        [("u1", "suppressed", OPTED_OUT)] * 3 + [("u3", "suppressed", OPTED_OUT)] * 3
        + [("u2", "pending", None)] * 3)


def test_a_quiet_window_that_would_fire_into_the_night_moves_a_jittered_row(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    # 20:59 in Berlin plus up to two minutes of jitter: some users fall into the window.
    cfg = write_config(tmp_path, "- {id: s, event_type: 'e:s', cron: '59 20 * * *',"
                                 " timezone: Europe/Berlin, jitter: 2m, users: [" +
                       ", ".join(f"u{i}" for i in range(40)) + "]}",
                       delivery=f"{QUIET}\nexpires_after: 12h")
    (job,) = plan.jobs(cfg)
    nominal = datetime(2026, 12, 1, 19, 59, tzinfo=UTC)
    window = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)

    async def scenario() -> dict[str, Row]:
        async with ledger_thread(memory_ledger) as db:
            await Firer(db, FakeClock(), cfg.delivery, lambda: None,
                        rules=Rules(cfg)).fire(job, nominal)
            return by_user(memory_ledger)

    found = asyncio.run(scenario())
    plain = {r.app_user_id: r.next_attempt_at for r in render_rows(
        job, nominal, iter(job.schedule.members(job.zone)), 100, 3600.0)}
    held = [u for u, at in plain.items() if at >= to_ms(window)]
    assert held and len(held) < len(plain)  # the jitter spreads them across the window's start
    for user, at in plain.items():
        assert found[user].next_attempt_at == (to_ms(BERLIN_08) if user in held else at)
    assert all(r.status == "pending" for r in found.values())


def test_a_catch_up_records_occurrences_on_a_skip_date_skipped(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "- {id: s, event_type: 'e:s', every: 1m, users: [u1],"
                                 " skip: {dates: [2026-12-01]}}",
                       delivery="catch_up: 5m\ncatch_up_mode: all")
    clock = FakeClock()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            await (await started(db, clock, cfg)).stop()  # ran at 10:00:30, then went down
            clock.t = minute(10) + timedelta(seconds=30)
            await started(db, clock, cfg)  # catches up 10:06 to 10:10
            log = fire_log(memory_ledger, "s")
            assert {t: log[t] for t in map(minute, range(6, 11))} == {
                minute(n): ("skipped", "skip date 2026-12-01") for n in range(6, 11)}
            assert memory_ledger.rows(Filters()) == []
            assert watermark(memory_ledger, "s@UTC") == to_ms(clock.t)

    asyncio.run(scenario())


def test_rows_the_cap_suppresses_are_counted_and_said_by_the_fire(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The ledger suppresses them as it inserts them; the fire still reports them."""
    caplog.set_level(logging.INFO, logger="eventcron")
    (tmp_path / "people.csv").write_text("app_user_id\np1\np2\n")
    cfg = write_config(tmp_path, """
        - {id: a, event_type: 'e:a', every: 1m, users: [p1, p2]}
        - {id: b, event_type: 'e:b', every: 1m, audience: people}
        """, extra="audiences:\n  people: {file: people.csv}\nlimits: {per_user: 1/day}\n")
    a, b = plan.jobs(cfg)
    metrics = Metrics()

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None, metrics=metrics,
                          rules=Rules(cfg))
            assert await firer.fire_together([(a, minute(1))]) == 2  # the small-fire path
            assert await firer.fire(b, minute(1)) == Enqueued(2, 2)  # one on its own
            assert {u: r.status for u, r in by_user(memory_ledger, "b").items()} == {
                "p1": "suppressed", "p2": "suppressed"}

    asyncio.run(scenario())
    assert metrics.outcomes["suppressed"] == 2
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fired b@")]
    assert said == ["fired b@UTC at 2026-12-01T10:01:00Z: 2 users enqueued;"
                    " 2 suppressed by the campaign rules"]
