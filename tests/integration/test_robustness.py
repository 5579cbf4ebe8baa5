"""Shutdown with requests in flight, long pauses, reloads at bad moments, vanishing files."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from eventcron.ledger import Filters, Ledger
from eventcron.testing import Faults, Sink
from tests.integration.harness import (
    SECRET,
    running,
    soon,
    with_a_later_time_until_in_time,
    write_schedule,
)


@pytest.mark.slow
def test_sigterm_with_requests_in_flight_drains_within_the_bound(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: slow, event_type: "a:b", at: "{soon()}", users: [u1, u2, u3]}}
        """
        async with running(tmp_path, body, faults=Faults(latency=30.0),
                           request_timeout="50s") as run:
            await run.until(lambda: run.daemon.dispatcher.inflight == 3)
            began = time.monotonic()
            run.daemon.request_stop()
            await asyncio.wait_for(run.task, 10)
            took = time.monotonic() - began
        assert took < 5.0  # drain_timeout is 2 s in the harness
        rows = Ledger.open(run.db_url).rows(Filters())
        assert {(r.status, r.attempts) for r in rows} == {("pending", 0)}

    asyncio.run(scenario())
    # The next start sends them, with the same keys.
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}")
    try:
        assert all(c is None for c in [r.last_error for r in ledger.rows(Filters())])
        assert len(ledger.claim("next", int(time.time() * 1000), 10, 1000)) == 3
    finally:
        ledger.close()


@pytest.mark.slow
def test_a_huge_retry_after_pauses_at_most_max_backoff_and_stop_interrupts(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: t, event_type: "a:b", at: "{soon()}", users: [u1]}}
        """
        faults = Faults(fail_keys={"u1": 429}, retry_after=3600)
        async with running(tmp_path, body, delivery="initial_backoff: 1s\nmax_backoff: 20s",
                           faults=faults) as run:
            await run.until(lambda: run.sink.count(429) == 1)
            loop = asyncio.get_running_loop()
            pause = run.daemon.dispatcher.pacer.pause_left(loop.time())
            assert 15 < pause <= 20
            began = time.monotonic()
            run.daemon.request_stop()
            await asyncio.wait_for(run.task, 10)
            assert time.monotonic() - began < 5.0

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_endpoint_recovers_after_429s(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = ", ".join(f"u{i}" for i in range(60))
        body = f"""
        schedules:
          - {{id: t, event_type: "a:b", at: "{soon()}", users: [{users}]}}
        """
        faults = Faults(fail_first=3, fail_status=429, retry_after=1)
        async with running(tmp_path, body, delivery="initial_backoff: 10ms\nmax_backoff: 2s",
                           faults=faults) as run:
            await run.until(lambda: len(run.sink.delivered()) == 60, within=30)
            pacer = run.daemon.dispatcher.pacer
            assert pacer.window < pacer.concurrency  # still recovering, gradually
            assert len(run.sink.records) == 63

    asyncio.run(scenario())


@pytest.mark.slow
def test_an_idle_dispatcher_does_not_poll_in_a_loop_while_requests_are_in_flight(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: slow, event_type: "a:b", at: "{soon()}", users: [u1]}}
        """
        async with running(tmp_path, body, faults=Faults(latency=10.0)) as run:
            await run.until(lambda: run.daemon.dispatcher.inflight == 1)
            ledger = run.daemon.db.ledger
            calls = 0
            original = ledger.claim

            def counting(*args: Any) -> Any:
                nonlocal calls
                calls += 1
                return original(*args)

            ledger.claim = counting  # type: ignore[method-assign,assignment]
            await asyncio.sleep(3.0)
            ledger.claim = original  # type: ignore[method-assign]
        assert calls <= 8  # about one a second, not hundreds

    asyncio.run(scenario())


def big_requests(sink: Sink) -> int:
    return len([r for r in sink.records if (r.app_user_id or "").startswith("b")])


def test_removing_a_schedule_while_it_fires_cancels_everything(tmp_path: Path) -> None:
    n = 40_000

    async def scenario(folder: Path, ahead: float) -> bool:
        (folder / "big.csv").write_text("app_user_id\n" + "".join(f"b{i}\n" for i in range(n)))
        body = f"""
        audiences:
          big: {{file: big.csv}}
        schedules:
          - {{id: big, event_type: "a:b", at: "{soon(ahead)}", audience: big}}
          - {{id: small, event_type: "a:c", every: 1s, users: [s1]}}
        """
        # The daemon's own fire is what the reload must cut short: no `eventcron fire`.
        async with running(folder, body, faults=Faults(latency=0.05), fire_due=False) as run:
            if run.passed_before_load("big"):
                return False  # started after its time, on a loaded machine: try later
            db = run.daemon.db.ledger
            await run.until(lambda: db.counts()["pending"] > 5000, within=60)
            write_schedule(folder, run.sink.url, """
            schedules:
              - {id: small, event_type: "a:c", every: 1s, users: [s1]}
            """)
            assert await run.daemon.reload("test")
            sent_at_reload = big_requests(run.sink)
            # The reload cancelled every pending row: once the requests in flight are
            # answered, nothing of `big` can be sent any more.
            await run.until(lambda: run.daemon.dispatcher.inflight == 0)
            counts = db.counts_by_schedule()["big"]
            sent = big_requests(run.sink)
            fires = db.fires_of("big")
        assert counts["pending"] == 0
        assert counts["cancelled"] > 0
        assert counts["delivered"] + counts["cancelled"] == sum(counts.values())
        assert sent <= sent_at_reload + 40  # only requests already in flight finished
        assert [f.status for f in fires] == ["skipped"]  # the fire is closed, not left open
        return True

    with_a_later_time_until_in_time(tmp_path, scenario)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_ledger_locked_during_reload_does_not_stop_the_daemon(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")

    async def scenario() -> None:
        body = """
        schedules:
          - {id: a, event_type: "a:b", every: 1s, users: [u1]}
          - {id: b, event_type: "a:c", every: 1s, users: [u2]}
        """
        async with running(tmp_path, body) as run:
            await run.until(lambda: len(run.sink.delivered()) >= 2)
            write_schedule(tmp_path, run.sink.url, """
            schedules:
              - {id: a, event_type: "a:b", every: 1s, users: [u1]}
            """)
            locked, release = threading.Event(), threading.Event()

            def hold_lock() -> None:
                conn = sqlite3.connect(str(tmp_path / "eventcron.db"), timeout=30)
                conn.execute("BEGIN EXCLUSIVE")
                locked.set()
                # Held until the reload is over, however long the ledger thread's queue makes
                # it wait: its writes then outlast the busy timeout (10 s) and fail.
                release.wait(90)
                conn.rollback()
                conn.close()

            holder = threading.Thread(target=hold_lock)
            holder.start()
            await asyncio.to_thread(locked.wait, 30)
            run.daemon.request_reload()
            try:
                await run.until(lambda: any(r.getMessage().startswith("reloaded ")
                                            for r in caplog.records), within=90)
            finally:
                release.set()
                await asyncio.to_thread(holder.join, 60)
            seen = len([r for r in run.sink.delivered() if r.app_user_id == "u1"])
            await run.until(lambda: len(
                [r for r in run.sink.delivered() if r.app_user_id == "u1"]) > seen + 1)
            assert "b" not in run.daemon.firing.state.active
            recent_b = [r for r in run.sink.delivered() if r.app_user_id == "u2"
                        and r.received_at > time.time() - 1]
            assert recent_b == []
        messages = [r.getMessage() for r in caplog.records]
        assert any("the ledger failed while applying" in m for m in messages)

    asyncio.run(scenario())


@pytest.mark.slow
def test_an_audience_file_that_vanishes_before_a_fire_is_retried_not_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")

    async def scenario(folder: Path, ahead: float) -> bool:
        csv = folder / "people.csv"
        csv.write_text("app_user_id\np1\np2\n")
        # The fire starts 2 s before the time: at least `ahead` s after the start.
        body = f"""
        audiences:
          people: {{file: people.csv}}
        schedules:
          - {{id: v, event_type: "a:b", at: "{soon(ahead + 2)}", audience: people}}
        """
        async with running(folder, body, fire_due=False) as run:
            db = run.daemon.db.ledger
            if db.fires_of("v"):
                return False  # begun (or skipped) before the file could vanish: try later
            # No await since that check, so the fire cannot have opened the file yet.
            csv.rename(folder / "away.csv")
            await run.until(lambda: any(f.status == "firing" for f in db.fires_of("v")))
            # It failed on the missing file and waits to try again, still open.
            await run.until(lambda: any("cannot fire v@UTC" in r.getMessage()
                                        for r in caplog.records))
            assert [f.status for f in db.fires_of("v")] == ["firing"]
            (folder / "away.csv").rename(csv)
            await run.until(lambda: len(run.sink.delivered()) == 2, within=20)
            # Rows go out as soon as they are enqueued; the fire is closed just after.
            await run.until(lambda: [(f.status, f.users) for f in db.fires_of("v")]
                            == [("fired", 2)])
        assert any("cannot stream the audience" in r.getMessage() for r in caplog.records)
        return True

    with_a_later_time_until_in_time(tmp_path, scenario)


def test_sink_fixture_secret_is_long_enough() -> None:
    assert len(SECRET) >= 32
    Sink(secret=SECRET)  # constructing it must not warn


@pytest.mark.slow
def test_a_blocked_event_loop_drops_no_fire(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        body = """
        schedules:
          - {id: second, event_type: "a:b", every: 1s, users: [u1]}
        """
        async with running(tmp_path, body) as run:
            await asyncio.sleep(1.5)
            time.sleep(3.5)  # noqa: ASYNC251 - a busy loop, on purpose
            await asyncio.sleep(3.0)
            fires = run.daemon.db.ledger.fires_of("second", limit=100)
        return sorted(f.scheduled_for for f in fires if f.status == "fired")

    fired = asyncio.run(scenario())
    assert len(fired) >= 6
    # One fire a second, none missing, although the loop was stuck for 3.5 of them.
    assert [b - a for a, b in itertools.pairwise(fired)] == [1000] * (len(fired) - 1)


@pytest.mark.slow
def test_the_rate_limit_spaces_requests(tmp_path: Path) -> None:
    async def scenario() -> list[float]:
        users = ", ".join(f"u{i}" for i in range(30))
        body = f"""
        schedules:
          - {{id: paced, event_type: "a:b", at: "{soon()}", users: [{users}]}}
        """
        async with running(tmp_path, body, rate_limit="10/s") as run:
            await run.until(lambda: len(run.sink.delivered()) == 30, within=20)
            return sorted(r.received_at for r in run.sink.records)

    arrived = asyncio.run(scenario())
    # 30 requests at 10/s with a burst of one: at least ~2.9 s from first to last.
    assert arrived[-1] - arrived[0] >= 2.5


@pytest.mark.slow
def test_a_429_pauses_every_send_for_its_retry_after(tmp_path: Path) -> None:
    async def scenario() -> tuple[float, list[float]]:
        users = ", ".join(f"u{i}" for i in range(600))
        body = f"""
        schedules:
          - {{id: t, event_type: "a:b", at: "{soon()}", users: [{users}]}}
        """
        delivery = "initial_backoff: 10ms\nmax_backoff: 10s"
        async with running(tmp_path, body, delivery=delivery,
                           faults=Faults(latency=0.02)) as run:
            await run.until(lambda: len(run.sink.delivered()) >= 50)
            run.sink.faults = Faults(throttle_rate=1.0, retry_after=3)
            await run.until(lambda: run.sink.count(429) >= 1)
            run.sink.faults = Faults(latency=0.02)
            first = min(r.received_at for r in run.sink.records if r.status == 429)
            await run.until(lambda: len(run.sink.delivered()) == 600, within=60)
            return first, [r.received_at for r in run.sink.records]

    first, arrivals = asyncio.run(scenario())
    # Requests already in flight may land just after the 429; then nothing until
    # Retry-After (3 s) has passed, although hundreds of claimed rows were waiting.
    during = [t for t in arrivals if first + 0.5 < t < first + 2.9]
    assert during == []


@pytest.mark.slow
def test_a_401_stops_sending_claimed_rows_too(tmp_path: Path) -> None:
    async def scenario() -> int:
        users = ", ".join(f"u{i}" for i in range(600))
        body = f"""
        schedules:
          - {{id: t, event_type: "a:b", at: "{soon()}", users: [{users}]}}
        """
        async with running(tmp_path, body, faults=Faults(latency=0.02)) as run:
            await run.until(lambda: len(run.sink.delivered()) >= 50)
            run.sink.set_reject_token(run.daemon.connection.token.value)
            await run.until(lambda: run.daemon.dispatcher.auth_problem is not None)
            # Every answer in and every claimed row given back, hundreds still due: from
            # here on nothing is sent until a new token comes.
            await run.until(lambda: run.daemon.dispatcher.inflight == 0
                            and run.claimed() == 0)
            assert sum(1 for r in run.rows() if r.status == "pending") > 100
            return run.sink.count(401)

    refused = asyncio.run(scenario())
    # At most what was in flight when the first 401 came back (32 at this concurrency).
    assert 1 <= refused <= 32
