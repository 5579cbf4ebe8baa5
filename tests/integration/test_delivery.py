"""The daemon against the sink over loopback: request shape, retries, auth, expiry, reload."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventcron import __version__
from eventcron.ledger import Filters
from eventcron.testing import Faults
from tests.integration.harness import (
    running,
    soon,
    with_a_later_time_until_in_time,
    write_schedule,
    write_token,
)

FAST_RETRY = """
initial_backoff: 100ms
max_backoff: 200ms
"""


@pytest.mark.slow
def test_the_request_is_exactly_what_the_api_documents(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - id: shape
            event_type: "appointment:scheduled"
            at: "{soon()}"
            users: [{{id: u_1, first_name: Ada}}]
            data: {{date: "${{scheduled_for}}", name: "${{user.first_name}}", n: 3}}
        """
        async with running(tmp_path, body) as run:
            await run.until(lambda: len(run.rows(Filters(status=("delivered",)))) == 1)
            (got,) = run.sink.records
            (row,) = run.rows()
        assert got.method == "POST"
        assert got.path == "/api/v1/webhook/event"
        assert got.headers["content-type"] == "application/json"
        assert got.headers["authorization"] == "Bearer <redacted>"  # verified HS256 by the sink
        assert got.idempotency_key == row.event_id
        assert got.user_agent == f"eventcron/{__version__}"
        assert (got.app_user_id, got.event_type) == ("u_1", "appointment:scheduled")
        nominal = datetime.fromtimestamp(row.scheduled_for / 1000, UTC)
        assert got.data == {"date": nominal.strftime("%Y-%m-%dT%H:%M:%SZ"), "name": "Ada", "n": 3}
        assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)

    asyncio.run(scenario())


@pytest.mark.slow
def test_5xx_is_retried_until_delivered_with_the_same_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: r, event_type: "a:b", at: "{soon()}", users: [u_1]}}
        """
        async with running(tmp_path, body, delivery=FAST_RETRY,
                           faults=Faults(fail_first=2, fail_status=503)) as run:
            await run.until(lambda: len(run.sink.delivered()) == 1)
            await run.until(lambda: [r.status for r in run.rows()] == ["delivered"])
            records = list(run.sink.records)
            (row,) = run.rows()
        assert [r.status for r in records] == [503, 503, 200]
        assert {r.idempotency_key for r in records} == {row.event_id}
        assert row.attempts == 3
        # Delivered, it still says why the attempt before failed.
        assert row.last_error is not None and row.last_error.startswith("HTTP 503")

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_400_is_sent_once_and_marked_failed(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: p, event_type: "a:b", at: "{soon()}", users: [u_ok, u_bad]}}
        """
        async with running(tmp_path, body, delivery=FAST_RETRY,
                           faults=Faults(fail_keys={"u_bad": 400})) as run:
            # Both rows final and nothing in flight: no retry can be on its way.
            await run.until(lambda: {r.status for r in run.rows()} == {"delivered", "failed"}
                            and run.daemon.dispatcher.inflight == 0)
            records = list(run.sink.records)
            rows = {r.app_user_id: r for r in run.rows()}
        assert [r.status for r in records if r.app_user_id == "u_bad"] == [400]
        bad = rows["u_bad"]
        assert (bad.status, bad.attempts, bad.last_status_code) == ("failed", 1, 400)
        assert bad.last_error is not None and bad.last_error.startswith("HTTP 400")
        assert rows["u_ok"].status == "delivered"

    asyncio.run(scenario())


@pytest.mark.slow
def test_retry_after_is_honoured_and_slows_the_whole_endpoint(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: t, event_type: "a:b", at: "{soon()}", users: [u_1, u_2, u_3]}}
        """
        # One request at a time: when the first is answered 429, the other two are claimed,
        # due and next in line, so only the endpoint-wide pause can hold them back.
        faults = Faults(fail_first=1, fail_status=429, retry_after=2)
        async with running(tmp_path, body, delivery="initial_backoff: 10ms\nmax_backoff: 1m",
                           faults=faults, concurrency=1) as run:
            await run.until(lambda: len(run.sink.delivered()) == 3)
            records = list(run.sink.records)
        first, *rest = sorted(records, key=lambda r: r.received_at)
        assert first.status == 429 and [r.status for r in rest] == [200, 200, 200]
        retry = next(r for r in rest if r.app_user_id == first.app_user_id)
        assert retry.idempotency_key == first.idempotency_key
        # The retry, and the events of the other users, all waited for Retry-After (2 s).
        assert all(r.received_at - first.received_at >= 2.0 for r in rest), (
            retry, [r.received_at - first.received_at for r in rest])

    asyncio.run(scenario())


@pytest.mark.slow
def test_401_holds_events_and_a_new_token_resumes_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: a, event_type: "a:b", at: "{soon()}", users: [u_1, u_2, u_3]}}
        """
        wrong = "w" * 40
        async with running(tmp_path, body, delivery=FAST_RETRY, token_secret=wrong) as run:
            await run.until(lambda: run.sink.count(401) >= 1)
            # Paused, with every answer in and every claim given back: the rows are due and
            # could be sent, but nothing is tried until a new token is loaded.
            await run.until(lambda: run.daemon.dispatcher.inflight == 0
                            and run.claimed() == 0 and len(run.rows()) == 3)
            refused = run.sink.count(401)
            rows = run.rows()
            assert refused <= 3  # paused after the first answers; nothing more was tried
            assert {(r.status, r.attempts) for r in rows} == {("pending", 0)}
            assert run.daemon.dispatcher.auth_problem is not None
            write_token(tmp_path)  # a good token, then a reload, as an operator would
            run.daemon.request_reload()
            await run.until(lambda: len(run.sink.delivered()) == 3)
            await run.until(lambda: all(r.status == "delivered" for r in run.rows()))
            assert {r.attempts for r in run.rows()} == {1}
            assert run.sink.count(401) == refused

    asyncio.run(scenario())


@pytest.mark.slow
def test_events_expire_after_expires_after(tmp_path: Path) -> None:
    async def scenario(folder: Path, ahead: float) -> bool:
        body = f"""
        schedules:
          - {{id: x, event_type: "a:b", at: "{soon(ahead)}", users: [u_1]}}
        """
        delivery = ("max_attempts: 1000\ninitial_backoff: 300ms\nmax_backoff: 300ms\n"
                    "expires_after: 1s")
        # Expiry counts from the nominal time, so the daemon itself must fire it on time.
        async with running(folder, body, delivery=delivery, fire_due=False,
                           faults=Faults(fail_rate=1.0, fail_status=503)) as run:
            if run.passed_before_load("x"):
                return False  # started after its time, on a loaded machine: try later
            await run.until(lambda: [r.status for r in run.rows()] == ["expired"], within=20)
            (row,) = run.rows()
            tries = len(run.sink.records)
            nominal = row.scheduled_for / 1000
            last = max(r.received_at for r in run.sink.records)
        assert tries >= 2  # retried while it could, full jitter within 300 ms
        assert row.attempts == tries
        assert last <= nominal + 1.0 + 0.3  # nothing sent after the expiry
        assert row.last_error is not None and "expir" in row.last_error
        return True

    with_a_later_time_until_in_time(tmp_path, scenario)


@pytest.mark.slow
def test_reload_applies_a_valid_file_and_keeps_running_on_an_invalid_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")

    async def scenario() -> None:
        body = """
        schedules:
          - {id: old, event_type: "a:old", every: 1s, users: [o_1]}
        """
        async with running(tmp_path, body) as run:
            await run.until(lambda: any(r.app_user_id == "o_1" for r in run.sink.delivered()))
            reloaded_at = time.time()
            write_schedule(tmp_path, run.sink.url, """
            schedules:
              - {id: new, event_type: "a:new", every: 1s, users: [n_1]}
            """)
            assert await run.daemon.reload("test")
            await run.until(lambda: any(r.app_user_id == "n_1" for r in run.sink.delivered()))
            rows = run.rows()
            old_pending = [r for r in rows if r.schedule_id == "old" and r.status == "pending"]
            assert old_pending == []
            cancelled = [r for r in rows if r.schedule_id == "old" and r.status == "cancelled"]
            assert cancelled, "the old schedule's pre-enqueued occurrences are cancelled"
            new_times = [r.scheduled_for / 1000 for r in rows if r.schedule_id == "new"]
            assert min(new_times) > reloaded_at  # no surprise fire of a past occurrence

            (tmp_path / "schedules.yaml").write_text("version: 1\nschedules:\n  - id: [\n")
            assert not await run.daemon.reload("test")
            seen = len([r for r in run.sink.delivered() if r.app_user_id == "n_1"])
            await run.until(lambda: len(
                [r for r in run.sink.delivered() if r.app_user_id == "n_1"]) > seen + 1)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("is not valid, still running the previous version" in m
                   and "YAML syntax error" in m for m in errors)

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_ledger_agrees_with_the_receiver(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = ", ".join(f"u{i}" for i in range(200))
        body = f"""
        schedules:
          - {{id: many, event_type: "a:b", at: "{soon()}", users: [{users}]}}
        """
        async with running(tmp_path, body, delivery=FAST_RETRY,
                           faults=Faults(fail_rate=0.2, seed=3)) as run:
            await run.until(lambda: len(run.sink.delivered()) == 200, within=30)
            await run.until(lambda: all(r.status == "delivered" for r in run.rows()))
            rows = run.rows()
            keys = run.sink.delivered_keys()
        assert set(keys) == {r.event_id for r in rows}
        assert max(keys.values()) == 1  # nothing delivered twice
        assert sum(r.attempts for r in rows) == len(run.sink.records)

    asyncio.run(scenario())


@pytest.mark.slow
def test_data_sent_is_the_data_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = f"""
        schedules:
          - id: d
            event_type: "a:b"
            at: "{soon()}"
            users: ["üser \\"quoted\\""]
            data: {{text: "line1\\nline2 ${{app_user_id}}", nested: {{list: [1, 2.5, null, true]}}}}
        """
        async with running(tmp_path, body) as run:
            await run.until(lambda: len(run.rows(Filters(status=("delivered",)))) == 1)
            (row,) = run.rows()
            got = run.sink.records[0]
        assert got.app_user_id == 'üser "quoted"'
        assert got.data == json.loads(row.data) == {
            "text": 'line1\nline2 üser "quoted"', "nested": {"list": [1, 2.5, None, True]}}

    asyncio.run(scenario())
