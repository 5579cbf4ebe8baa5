"""Campaign rules against a running daemon: a real SQLite file, real HTTP to the sink.

The daemon's clock is a FakeClock the test moves; its ``at:`` times lie in the fake
clock's near future and in the real past, so APScheduler hands each occurrence over as
soon as the daemon is ready, and the fake clock decides what is due when.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.clock import to_ms
from eventcron.ledger import Filters, Ledger, NewRow, Row
from tests.integration.harness import Running, running
from tests.unit.fakes import FakeClock

MORNING = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
NIGHT = datetime(2026, 12, 1, 21, 0, 30, tzinfo=UTC)  # 22:00 in Berlin, 06:00 in Tokyo
TOKYO_END = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
BERLIN_END = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
QUIET = 'quiet_hours: {from: "21:00", to: "08:00"}\nexpires_after: 12h'


def by_user(run: Running, schedule: str | None = None) -> dict[str, Row]:
    return {r.app_user_id: r for r in run.rows(Filters(schedule=(schedule,) if schedule
                                                       else ()))}


def sent_to(run: Running) -> list[str]:
    """Return the users of the requests the sink accepted, in the order it got them."""
    return [r.app_user_id or "" for r in run.sink.delivered()]


def enqueue(run: Running, row: NewRow) -> None:
    """Insert a row through a connection of its own, as another instance or a replay would."""
    ledger = Ledger.open(run.db_url)
    try:
        ledger.enqueue([row], row.scheduled_for)
    finally:
        ledger.close()


def delivered(run: Running) -> set[str]:
    """Return the users whose rows the ledger records delivered.

    A test moves the fake clock only once they are recorded: a jump past the claim lease
    while an answer is still unrecorded would let the row be claimed and sent again.
    """
    return {r.app_user_id for r in run.rows() if r.status == "delivered"}


async def move(run: Running, clock: FakeClock, to: datetime) -> None:
    """Set the fake clock and have the dispatcher look for due rows at once."""
    clock.t = to
    run.daemon.dispatcher.wake()
    await asyncio.sleep(0)


def test_two_schedules_due_together_send_each_user_one_event_under_a_daily_cap(
        tmp_path: Path) -> None:
    body = """
    limits: {per_user: 1/day}
    schedules:
      - {id: first, event_type: "a:first", at: "2026-12-01T10:01:00Z", users: [u1, u2, u3]}
      - {id: second, event_type: "a:second", at: "2026-12-01T10:01:00Z", users: [u1, u2, u3]}
      - {id: receipts, event_type: "a:receipt", at: "2026-12-01T10:01:00Z", users: [u1],
         limits: exempt}
    """
    clock = FakeClock(MORNING)

    async def scenario() -> list[Row]:
        async with running(tmp_path, body, clock=clock, fire_due=False) as run:
            await run.until(lambda: len(run.rows()) == 7)
            await move(run, clock, MORNING + timedelta(seconds=30))
            await run.until(lambda: all(r.status != "pending" for r in run.rows()))
            return run.rows()

    rows = asyncio.run(scenario())
    capped = [r for r in rows if r.schedule_id in ("first", "second")]
    delivered = sorted((r.app_user_id, r.schedule_id) for r in capped
                       if r.status == "delivered")
    assert [user for user, _ in delivered] == ["u1", "u2", "u3"]  # one event each
    for r in capped:
        if r.status == "delivered":
            continue
        other = "second" if r.schedule_id == "first" else "first"
        assert r.status == "suppressed"
        assert r.last_error is not None
        assert r.last_error.startswith("per-user cap 1/day reached for 2026-12-01 (UTC)")
        assert other in r.last_error  # the event that filled the cap
    # The exempt schedule neither counts nor is capped.
    assert [(r.app_user_id, r.status) for r in rows if r.schedule_id == "receipts"] == [
        ("u1", "delivered")]


def test_quiet_hours_across_midnight_hold_each_user_until_the_end_in_their_zone(
        tmp_path: Path) -> None:
    body = """
    schedules:
      - {id: nightly, event_type: "a:nightly", at: "2026-12-01T21:01:00Z",
         users: [{id: berlin, timezone: Europe/Berlin}, {id: tokyo, timezone: Asia/Tokyo},
                 {id: utc}]}
    """
    clock = FakeClock(NIGHT)

    async def scenario() -> None:
        async with running(tmp_path, body, delivery=QUIET, clock=clock, fire_due=False) as run:
            await run.until(lambda: len(run.rows()) == 3)
            # 21:01 in UTC is 22:01 in Berlin and 06:01 in Tokyo: every one is held.
            assert {u: (r.status, r.next_attempt_at) for u, r in by_user(run).items()} == {
                "berlin": ("pending", to_ms(BERLIN_END)), "tokyo": ("pending", to_ms(TOKYO_END)),
                "utc": ("pending", to_ms(datetime(2026, 12, 2, 8, 0, tzinfo=UTC)))}
            # A row due now, in the night (a replay, say): the dispatcher holds it.
            now = NIGHT + timedelta(minutes=1)
            await move(run, clock, now)
            enqueue(run, NewRow("nightly", "replayed", "a:nightly", to_ms(now), "{}",
                                to_ms(now), to_ms(now + timedelta(hours=12)), "Europe/Berlin"))
            run.daemon.dispatcher.wake()
            await run.until(lambda: by_user(run)["replayed"].last_error is not None)
            replayed = by_user(run)["replayed"]
            assert (replayed.status, replayed.attempts, replayed.next_attempt_at,
                    replayed.last_error) == (
                "pending", 0, to_ms(BERLIN_END), "held for quiet hours 21:00-08:00"
                " (Europe/Berlin) until 2026-12-02T07:00:00Z")
            await move(run, clock, TOKYO_END - timedelta(seconds=1))
            await asyncio.sleep(0.2)  # time enough to send one too early, were it to
            assert sent_to(run) == []
            await move(run, clock, TOKYO_END)
            await run.until(lambda: delivered(run) == {"tokyo"})
            await move(run, clock, BERLIN_END)
            await run.until(lambda: delivered(run) == {"tokyo", "berlin", "replayed"})
            await move(run, clock, datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
            await run.until(lambda: delivered(run) == {"tokyo", "berlin", "replayed", "utc"})
            sent = sent_to(run)  # once each, at its window's end
            assert (sent[0], sorted(sent[1:3]), sent[3]) == ("tokyo", ["berlin", "replayed"],
                                                             "utc")
            assert all(r.attempts == 1 for r in run.rows())

    asyncio.run(scenario())


def test_an_opt_out_added_to_the_file_suppresses_pending_rows_at_the_reload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    optouts = tmp_path / "optouts.csv"
    optouts.write_text("app_user_id,note\nsomeone,left in 2025\n")
    body = """
    suppress: {file: optouts.csv}
    schedules:
      - {id: nightly, event_type: "a:nightly", at: "2026-12-01T21:01:00Z",
         users: [{id: u1, timezone: Asia/Tokyo}, {id: u2, timezone: Asia/Tokyo}]}
    """
    clock = FakeClock(NIGHT)

    def said(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    async def scenario() -> None:
        async with running(tmp_path, body, delivery=QUIET, clock=clock, fire_due=False,
                           watch=True) as run:
            await run.until(lambda: len(run.rows()) == 2)  # held until 08:00 in Tokyo
            optouts.write_text("user\nu2\n")  # no app_user_id column: refused
            await run.until(lambda: said("is not valid, still running the previous version"))
            assert [r.status for r in run.rows()] == ["pending", "pending"]
            optouts.write_text("app_user_id,note\nsomeone,left in 2025\nu2,asked today\n")
            await run.until(lambda: by_user(run)["u2"].status == "suppressed")
            assert by_user(run)["u2"].last_error == "opted out"
            assert said("1 pending event of opted-out users suppressed")
            await move(run, clock, TOKYO_END)
            await run.until(lambda: delivered(run) == {"u1"})
            assert sent_to(run) == ["u1"]

    asyncio.run(scenario())


def test_a_quiet_window_longer_than_the_expiry_is_warned_of_at_start_and_reload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="eventcron")
    body = """
    schedules:
      - {id: nightly, event_type: "a:nightly", cron: "0 22 * * *", users: [u1]}
    """
    warning = ("schedule 'nightly': its quiet hours (21:00-08:00, 11h) last longer than"
               " delivery.expires_after (6h)")

    def warned() -> int:
        return sum(warning in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)

    async def scenario() -> None:
        async with running(tmp_path, body, delivery=QUIET.replace("12h", "6h"),
                           clock=FakeClock(MORNING), fire_due=False) as run:
            assert warned() == 1
            assert await run.daemon.reload("test")
            assert warned() == 2

    asyncio.run(scenario())
