"""Occurrences that pass before a schedule is loaded are recorded; reloads run one at a time."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron import config
from eventcron.clock import rfc3339, to_ms
from eventcron.ledger import PASSED_BEFORE_LOAD, Ledger
from eventcron.service.notify import Notifier
from tests.integration.harness import running, write_schedule


def whole_seconds_ago(seconds: float) -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(microsecond=0)


def fires(url: str, schedule_id: str) -> list[tuple[int, str, str | None]]:
    ledger = Ledger.open(url, create=False)
    try:
        return [(r.scheduled_for, r.status, r.reason) for r in ledger.fires_of(schedule_id)]
    finally:
        ledger.close()


def test_an_occurrence_that_passed_before_the_start_is_recorded_and_announced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="eventcron")
    passed = whole_seconds_ago(30)
    body = f"""
    schedules:
      - {{id: missed, event_type: "a:b", at: "{rfc3339(passed)}", timezone: Asia/Tokyo,
         users: [u_1, u_2]}}
    """

    async def scenario() -> None:
        async with running(tmp_path, body) as run:
            # Recorded before the daemon says it is ready: nothing to wait for.
            assert fires(run.db_url, "missed") == [(to_ms(passed), "skipped", PASSED_BEFORE_LOAD)]
            assert run.rows() == []

    asyncio.run(scenario())
    (warning,) = [r.getMessage() for r in caplog.records if "passed before" in r.getMessage()]
    local = passed.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert "schedule missed" in warning
    assert rfc3339(passed) in warning
    assert local.isoformat(timespec="seconds") in warning and "Asia/Tokyo" in warning
    assert (f"eventcron --config {tmp_path / 'schedules.yaml'} --database"
            f" sqlite:///{tmp_path / 'eventcron.db'} fire missed --occurrence"
            f" {rfc3339(passed)}") in warning


def test_older_than_catch_up_is_not_recorded_as_passed(tmp_path: Path) -> None:
    body = f"""
    schedules:
      - {{id: old, event_type: "a:b", at: "{rfc3339(whole_seconds_ago(120))}", users: [u_1]}}
    """

    async def scenario() -> None:
        async with running(tmp_path, body, delivery="catch_up: 1m") as run:
            assert fires(run.db_url, "old") == []

    asyncio.run(scenario())


def test_a_reload_records_what_a_new_or_retimed_schedule_passed_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = """
        schedules:
          - {id: keep, event_type: "a:b", every: 1h, starts: "2030-01-01T00:00:00", users: [u]}
        """
        async with running(tmp_path, body) as run:
            assert fires(run.db_url, "keep") == []
            before = datetime.now(UTC)
            write_schedule(tmp_path, run.sink.url, """
            schedules:
              - {id: keep, event_type: "a:b", every: 10m, users: [u]}
              - {id: added, event_type: "a:b", every: 10m, users: [u]}
            """)
            assert await run.daemon.reload("test")
            after = datetime.now(UTC)
            for schedule_id in ("keep", "added"):  # retimed, and new
                ((at_ms, status, reason),) = fires(run.db_url, schedule_id)
                assert (status, reason) == ("skipped", PASSED_BEFORE_LOAD)
                # the latest 10-minute mark at or before the reload
                assert to_ms(before) - 600_000 < at_ms <= to_ms(after)
                assert at_ms % 600_000 == 0

    asyncio.run(scenario())


def test_an_instance_that_loaded_in_time_fires_what_another_recorded_as_passed(
        ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    try:
        t = 1_790_000_000_000
        assert ledger.skip_passed("s", "UTC", t, t + 5)
        assert not ledger.skip_passed("s", "UTC", t, t + 6)  # once
        assert ledger.begin_fire("s", "UTC", t, t + 7)  # the one that had it loaded fires
        ledger.finish_fire("s", "UTC", t, 1, t + 8)
        assert not ledger.skip_passed("s", "UTC", t, t + 9)  # a fired one stays fired
        assert [(r.status, r.reason) for r in ledger.fires_of("s")] == [("fired", None)]
        # Any other skip stands, except against `eventcron fire` (by hand).
        ledger.record_skipped("s", "UTC", [t + 60_000], "catch_up_mode is none", t)
        assert not ledger.begin_fire("s", "UTC", t + 60_000, t + 10)
        assert ledger.begin_fire_by_hand("s", "UTC", t + 60_000, t + 11)  # its own to finish
        # By hand during a fire in progress (or after one) joins it: rows only, no record.
        assert ledger.begin_fire("s", "UTC", t + 120_000, t + 12)
        assert not ledger.begin_fire_by_hand("s", "UTC", t + 120_000, t + 13)
        assert next((r.scheduled_for, r.status) for r in ledger.fires_of("s")) == (
            t + 120_000, "firing")
        assert not ledger.begin_fire_by_hand("s", "UTC", t, t + 14)  # fired: joined
    finally:
        ledger.close()


def test_reloads_run_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = 0
    most = 0
    lock = threading.Lock()
    real_load = config.load

    def slow_load(path: Path) -> config.Config:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            threading.Event().wait(0.3)  # long enough for a second reload to start
            return real_load(path)
        finally:
            with lock:
                inside -= 1

    body = """
    schedules:
      - {id: s, event_type: "a:b", every: 1h, starts: "2030-01-01T00:00:00", users: [u]}
    """

    async def scenario() -> None:
        async with running(tmp_path, body) as run:
            monkeypatch.setattr(config, "load", slow_load)
            results = await asyncio.gather(run.daemon.reload("SIGHUP"),
                                           run.daemon.reload("the file changed"))
            assert list(results) == [True, True]

    asyncio.run(scenario())
    assert most == 1


@pytest.mark.slow
def test_an_edit_made_during_a_reload_is_applied_after_it(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = config.load
    edited = threading.Event()
    url: list[str] = []

    def load_then_edit(path: Path) -> config.Config:
        cfg = real_load(path)
        if not edited.is_set() and cfg.schedule("second") is not None:
            # The operator saves again while this reload is still being applied.
            write_schedule(path.parent, url[0], """
            schedules:
              - {id: third, event_type: "a:b", every: 1h, starts: "2030-01-01T00:00:00",
                 users: [u]}
            """)
            edited.set()
        return cfg

    first = """
    schedules:
      - {id: first, event_type: "a:b", every: 1h, starts: "2030-01-01T00:00:00", users: [u]}
    """

    async def scenario() -> None:
        async with running(tmp_path, first, watch=True) as run:
            url.append(run.sink.url)
            monkeypatch.setattr(config, "load", load_then_edit)
            write_schedule(tmp_path, run.sink.url, """
            schedules:
              - {id: second, event_type: "a:b", every: 1h, starts: "2030-01-01T00:00:00",
                 users: [u]}
            """)
            await run.until(edited.is_set, within=30)
            await run.until(lambda: run.daemon.firing.state.config.schedule("third") is not None,
                            within=30)

    asyncio.run(scenario())


def test_nothing_reaches_systemd_after_stopping(tmp_path: Path) -> None:
    address = f"@eventcron-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:])
    sock.setblocking(False)
    notifier = Notifier(address)
    try:
        notifier.ready("up")
        notifier.stopping()
        notifier.ready("a reload cut short by the stop")
        notifier.status("late")
        notifier.watchdog()
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
        assert messages == ["READY=1\nSTATUS=up", "STOPPING=1"]
    finally:
        notifier.close()
        sock.close()
