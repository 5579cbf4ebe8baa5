"""The dispatcher under the campaign rules: opt-outs and quiet hours right before sending.

In-process, as test_dispatcher.py: the in-memory ledger, a scripted sender and a fake
clock; the rules come from real schedule files (``campaign.Rules``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.campaign import OPTED_OUT, Rules
from eventcron.clock import to_ms
from eventcron.delivery.retry import Outcome
from eventcron.firing.pipeline import Firing
from eventcron.ledger import Ledger, NewRow, Row
from tests.unit.fakes import FakeClock, FakeSender, until, write_config
from tests.unit.test_dispatcher import by_user, dispatching, scripted

HOUR = 3_600_000
EVENING = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 06:30 in Tokyo
BERLIN_END = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
TOKYO_END = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
SCHEDULE = ("- {id: s, event_type: 'e:t', cron: '0 9 * * *', timezone: Europe/Berlin,"
            " users: [u0]}")
QUIET = 'quiet_hours: {from: "21:00", to: "08:00"}'
HELD = "held for quiet hours 21:00-08:00 ({zone}) until {end}"
TOO_LONG = ("quiet hours 21:00-08:00 (Europe/Berlin) last past its expiry"
            " (delivery.expires_after)")


def rules_of(folder: Path, *, delivery: str = QUIET, optouts: tuple[str, ...] = (),
             name: str = "schedules.yaml") -> Rules:
    """The rules of a file with schedule ``s`` (Berlin), ``delivery`` and opt-outs."""
    extra = ""
    if optouts:
        (folder / "optouts.csv").write_text("app_user_id\n" + "\n".join(optouts) + "\n")
        extra = "suppress: {file: optouts.csv}\n"
    return Rules(write_config(folder, SCHEDULE, delivery=delivery, extra=extra, name=name))


def row(user: str, due: datetime, *, zone: str | None = "Europe/Berlin",
        expires_in: int = 12 * HOUR) -> NewRow:
    return NewRow("s", user, "e:t", to_ms(due), '{"k":1}', to_ms(due), to_ms(due) + expires_in,
                  zone)


def state(r: Row) -> tuple[str, int, int, str | None]:
    return r.status, r.attempts, r.next_attempt_at, r.last_error


def test_a_row_of_a_user_who_opted_out_is_suppressed_not_sent(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    # Enqueued before the user opted out (or claimed while the list was reloaded).
    memory_ledger.enqueue([row("u0", EVENING), row("u1", EVENING)], 0)
    sender = FakeSender()

    async def scenario() -> None:
        rules = rules_of(tmp_path, delivery="expires_after: 1h", optouts=("u1",))
        async with dispatching(memory_ledger, sender, FakeClock(EVENING), rules) as d:
            await until(lambda: memory_ledger.counts()["pending"] == 0)
            found = by_user(memory_ledger)
            assert (d.stats.suppressed, d.metrics.outcomes["suppressed"]) == (1, 1)
            assert d.stats.line().endswith(", 1 suppressed")
        assert [u for _, u in sender.sent] == ["u0"]
        assert (found["u0"].status, found["u0"].attempts) == ("delivered", 1)
        assert state(found["u1"]) == ("suppressed", 0, to_ms(EVENING), OPTED_OUT)

    asyncio.run(scenario())


def test_a_row_claimed_inside_quiet_hours_waits_for_their_end_in_its_own_zone(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventcron.dispatch")
    # Due at 22:30 in Berlin, 06:30 in Tokyo: a replay, a catch-up, or a window added later.
    memory_ledger.enqueue([row("berlin", EVENING), row("tokyo", EVENING, zone="Asia/Tokyo")], 0)
    sender = FakeSender()
    clock = FakeClock(EVENING)

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, clock, rules_of(tmp_path)) as d:
            await until(lambda: by_user(memory_ledger)["berlin"].last_error is not None
                        and by_user(memory_ledger)["tokyo"].last_error is not None)
            found = by_user(memory_ledger)
            assert state(found["berlin"]) == ("pending", 0, to_ms(BERLIN_END), HELD.format(
                zone="Europe/Berlin", end="2026-12-02T07:00:00Z"))
            assert state(found["tokyo"]) == ("pending", 0, to_ms(TOKYO_END), HELD.format(
                zone="Asia/Tokyo", end="2026-12-01T23:00:00Z"))
            assert (d.stats.quiet, d.metrics.outcomes["quiet"]) == (2, 2)
            assert sender.sent == []
            clock.t = TOKYO_END
            d.wake()
            await until(lambda: by_user(memory_ledger)["tokyo"].status == "delivered")
            assert by_user(memory_ledger)["tokyo"].attempts == 1  # the wait spent none
            assert by_user(memory_ledger)["berlin"].status == "pending"
            clock.t = BERLIN_END
            d.wake()
            await until(lambda: by_user(memory_ledger)["berlin"].status == "delivered")
            assert by_user(memory_ledger)["berlin"].attempts == 1
            # Delivered by their first attempt, however long the window held them.
            assert sum(d.metrics.lateness_buckets[0]) == 2
        assert [u for _, u in sender.sent] == ["tokyo", "berlin"]

    asyncio.run(scenario())
    held = [r for r in caplog.records if getattr(r, "status", None) == "quiet"]
    assert sorted(r.app_user_id for r in held) == ["berlin", "tokyo"]  # type: ignore[attr-defined]


def test_a_row_whose_quiet_hours_outlast_its_expiry_expires_unsent(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    memory_ledger.enqueue([row("u0", EVENING, expires_in=2 * HOUR)], 0)
    sender = FakeSender()

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(EVENING),
                               rules_of(tmp_path)) as d:
            await until(lambda: memory_ledger.counts()["pending"] == 0)
            found = by_user(memory_ledger)["u0"]
            assert (d.stats.expired, d.metrics.outcomes["expired"]) == (1, 1)
        assert state(found) == ("expired", 0, to_ms(EVENING), TOO_LONG)
        assert sender.sent == []

    asyncio.run(scenario())


def test_a_retry_due_inside_quiet_hours_waits_for_their_end(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    first = datetime(2026, 12, 1, 19, 59, 50, tzinfo=UTC)  # 20:59:50 in Berlin
    memory_ledger.enqueue([row("u0", first)], 0)
    sender = FakeSender(scripted(Outcome("retry", 503, "HTTP 503 Service Unavailable")))
    clock = FakeClock(first)

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, clock, rules_of(tmp_path)) as d:
            await until(lambda: by_user(memory_ledger)["u0"].attempts == 1)
            # The backoff (30 s) would retry at 21:00:20, inside the window: at 08:00 then.
            assert state(by_user(memory_ledger)["u0"]) == (
                "pending", 1, to_ms(BERLIN_END), "HTTP 503 Service Unavailable; " + HELD.format(
                    zone="Europe/Berlin", end="2026-12-02T07:00:00Z"))
            assert d.metrics.outcomes["retry"] == 1
            clock.advance(30)
            # A probe due then (20:00:20 in UTC, its zone: no window) proves the dispatcher
            # looked at 21:00:20 Berlin time, when the unmoved retry would have gone out.
            memory_ledger.enqueue([row("probe", clock.t, zone="UTC")], 0)
            d.wake()
            await until(lambda: by_user(memory_ledger)["probe"].status == "delivered")
            assert [u for _, u in sender.sent] == ["u0", "probe"]
            clock.t = BERLIN_END
            d.wake()
            await until(lambda: by_user(memory_ledger)["u0"].status == "delivered")
            assert by_user(memory_ledger)["u0"].attempts == 2
        assert [u for _, u in sender.sent] == ["u0", "probe", "u0"]

    asyncio.run(scenario())


def test_a_retry_whose_quiet_hours_outlast_its_expiry_expires(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    first = datetime(2026, 12, 1, 19, 59, 50, tzinfo=UTC)  # 20:59:50 in Berlin
    memory_ledger.enqueue([row("u0", first, expires_in=HOUR)], 0)
    sender = FakeSender(scripted(Outcome("retry", 503, "HTTP 503 Service Unavailable")))

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(first),
                               rules_of(tmp_path)) as d:
            await until(lambda: memory_ledger.counts()["pending"] == 0)
            found = by_user(memory_ledger)["u0"]
            assert d.stats.expired == 1
        assert state(found) == ("expired", 1, to_ms(first),
                                f"HTTP 503 Service Unavailable; {TOO_LONG}")
        assert len(sender.sent) == 1

    asyncio.run(scenario())


def test_an_opt_out_added_at_a_reload_is_never_sent(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    schedules = "- {id: s, event_type: 'e:t', every: 1m, users: [u0, u1]}"
    before = write_config(tmp_path, schedules)
    (tmp_path / "optouts.csv").write_text("app_user_id\nu1\n")
    after = write_config(tmp_path, schedules, name="after.yaml",
                         extra="suppress: {file: optouts.csv}\n")
    clock = FakeClock(EVENING)
    memory_ledger.enqueue([row(u, EVENING.replace(minute=31), zone=None) for u in ("u0", "u1")],
                          0)
    sender = FakeSender()

    async def scenario() -> None:
        rules = Rules(before)
        async with dispatching(memory_ledger, sender, clock, rules) as d:
            firing = Firing(d.db, clock, before, on_enqueued=d.wake, metrics=d.metrics,
                            rules=rules)
            await firing.prepare(clock.now())
            # The reload, as the daemon applies it.
            new_rules = Rules(after)
            d.configure(sender.as_sender(), after.delivery, 4, None, new_rules)
            change = await firing.configure(after, clock.now(), new_rules)
            assert change.suppressed == 1
            clock.advance(60)
            d.wake()
            await until(lambda: memory_ledger.counts()["pending"] == 0)
            found = by_user(memory_ledger)
        assert [u for _, u in sender.sent] == ["u0"]
        assert (found["u1"].status, found["u1"].last_error) == ("suppressed", OPTED_OUT)

    asyncio.run(scenario())


def test_without_rules_in_force_nothing_is_asked_before_a_send(
        memory_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = rules_of(tmp_path, delivery="expires_after: 1h")
    assert not rules.active

    def never(*_args: object) -> None:
        raise AssertionError("the rules were asked on the fast path")

    monkeypatch.setattr(Rules, "opted_out", never)
    monkeypatch.setattr(Rules, "quiet_until", never)
    memory_ledger.enqueue([row("u0", EVENING)], 0)
    sender = FakeSender(scripted(Outcome("retry", 503, "HTTP 503 Service Unavailable")))
    clock = FakeClock(EVENING)

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, clock, rules) as d:
            await until(lambda: by_user(memory_ledger)["u0"].attempts == 1)
            clock.advance(30)
            d.wake()
            await until(lambda: by_user(memory_ledger)["u0"].status == "delivered")

    asyncio.run(scenario())


def test_a_row_waiting_for_the_rate_limit_is_checked_when_its_turn_comes(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    """Checked at 20:59:59, its turn at 21:00:01: it must be held, not sent in the window."""
    before = datetime(2026, 12, 1, 19, 59, 59, tzinfo=UTC)  # 20:59:59 in Berlin
    memory_ledger.enqueue([row(f"u{i}", before) for i in range(3)], 0)
    clock, sender = FakeClock(before), FakeSender()
    window_end = to_ms(datetime(2026, 12, 2, 7, 0, tzinfo=UTC))  # 08:00 Berlin

    async def scenario() -> None:
        # One request a second: the first goes at once, the others wait their turn.
        async with dispatching(memory_ledger, sender, clock, rules_of(tmp_path), rate=1.0):
            await until(lambda: len(sender.sent) == 1)
            clock.t = before + timedelta(seconds=2)  # the window opens while they wait
            await until(lambda: sum(r.next_attempt_at == window_end
                                    for r in by_user(memory_ledger).values()) == 2)
            held = [r for r in by_user(memory_ledger).values() if r.status == "pending"]
            assert len(held) == 2 and all(r.attempts == 0 for r in held)

    asyncio.run(scenario())
    assert len(sender.sent) == 1
