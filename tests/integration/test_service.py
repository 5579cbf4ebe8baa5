"""The daemon as a service: sd_notify over a real socket, metrics and health over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from eventcron.service.notify import Notifier
from eventcron.testing import Faults
from tests.integration.harness import running


class Listener:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind = ("\0" + address[1:]) if address.startswith("@") else address
        self.sock.bind(bind)
        self.sock.setblocking(False)
        self.address = address
        self.messages: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> list[tuple[float, dict[str, str]]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    address = (str(tmp_path / "notify.sock") if request.param == "path"
               else f"@eventcron-test-{uuid.uuid4().hex}")
    sock = Listener(address)
    yield sock
    sock.close()


BODY = """
schedules:
  - {id: beat, event_type: "a:b", every: 1s, users: [u_1]}
"""


@pytest.mark.slow
def test_notify_protocol_over_a_real_socket(tmp_path: Path, listener: Listener,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    async def drain_forever() -> None:
        while True:  # as systemd does: read every notification as it comes
            listener.drain()
            await asyncio.sleep(0.02)

    def seen(condition: Callable[[dict[str, str]], bool], since: float = 0.0) -> int:
        return sum(1 for t, f in listener.messages if t >= since and condition(f))

    async def scenario() -> None:
        reader = asyncio.create_task(drain_forever())
        async with running(tmp_path, BODY, notifier=Notifier(listener.address),
                           observe_interval=0.3) as run:
            await run.until(lambda: len(run.sink.delivered()) >= 1)
            await run.until(lambda: seen(lambda f: "next fire beat@UTC" in f.get("STATUS", ""))
                            > 0)
            reloaded = time.monotonic()
            run.daemon.request_reload()
            await run.until(lambda: seen(lambda f: f.get("RELOADING") == "1") == 1
                            and seen(lambda f: f.get("READY") == "1", reloaded) > 0)
            # A stalled event loop sends no pings: block it and look for the gap.
            time.sleep(1.0)  # noqa: ASYNC251 - the stall is the point
            stalled = time.monotonic()
            await run.until(lambda: seen(lambda f: f == {"WATCHDOG": "1"}, stalled) >= 2
                            and seen(lambda f: f == {"WATCHDOG": "1"}) >= 5)
        reader.cancel()

    asyncio.run(scenario())
    messages = listener.drain()
    kinds = [next(iter(f)) if len(f) == 1 else "+".join(sorted(f)) for _, f in messages]
    firsts = [i for i, (_, f) in enumerate(messages) if f.get("READY") == "1"]
    assert firsts, kinds
    ready = messages[firsts[0]][1]
    assert "STATUS" in ready
    reloading = [i for i, (_, f) in enumerate(messages) if f.get("RELOADING") == "1"]
    assert len(reloading) == 1
    reload_msg = messages[reloading[0]][1]
    assert int(reload_msg["MONOTONIC_USEC"]) > 0
    assert any(f.get("READY") == "1" for _, f in messages[reloading[0] + 1:])
    assert messages[-1][1] == {"STOPPING": "1"}
    statuses = [f["STATUS"] for _, f in messages if "STATUS" in f]
    assert any("pending" in s and "next fire beat@UTC" in s for s in statuses)
    pings = [t for t, f in messages if f == {"WATCHDOG": "1"}]
    assert len(pings) >= 5
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 0.9  # the blocked second shows
    assert sorted(gaps)[len(gaps) // 2] < 0.5  # otherwise every ~0.2 s


def test_no_notify_socket_means_no_notifications(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # a no-op, not an error


def test_a_full_socket_never_blocks(tmp_path: Path) -> None:
    nobody_reads = Listener(str(tmp_path / "full.sock"))
    notifier = Notifier(nobody_reads.address)
    began = time.monotonic()
    for _ in range(1000):
        notifier.watchdog()
    assert time.monotonic() - began < 1.0
    assert len(nobody_reads.drain()) >= 1
    notifier.close()
    nobody_reads.close()


def test_a_missing_socket_is_logged_once_not_raised(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    notifier.ready()
    notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
    notifier.close()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and " " in line):
            key, value = line.rsplit(" ", 1)
            if key == name:
                return float(value)
    raise AssertionError(f"{name} not in metrics:\n{text}")


def counted(text: str, name: str) -> float:
    """A metric's value, 0 while it has not appeared yet."""
    try:
        return metric(text, name)
    except AssertionError:
        return 0.0


@pytest.mark.slow
def test_metrics_and_health_over_http(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = """
        schedules:
          - {id: beat, event_type: "a:b", every: 1s, users: [u_1, u_2, u_bad]}
        """
        faults = Faults(fail_keys={"u_bad": 400})
        async with running(tmp_path, body, faults=faults, metrics_listen=("127.0.0.1", 0),
                           observe_interval=0.2) as run:
            server = run.daemon.metrics_server
            assert server is not None and server.host == "127.0.0.1"
            base = f"http://127.0.0.1:{server.port}"
            await run.until(lambda: len(run.sink.delivered()) >= 4)
            async with httpx.AsyncClient() as client:
                # Row counts are refreshed every 0.2 s here: wait for one that shows them.
                deadline = time.monotonic() + 30
                while True:
                    text = (await client.get(f"{base}/metrics", timeout=30)).text
                    if counted(text, 'eventcron_ledger_rows{state="delivered"}') >= 2 and (
                            counted(text, 'eventcron_deliveries_total{outcome="failed"}') >= 1):
                        break
                    assert time.monotonic() < deadline, text
                    await asyncio.sleep(0.1)
                health = await client.get(f"{base}/healthz")
                missing = await client.get(f"{base}/nothing")
                # The ledger locked by another process: no write gets through in time.
                lock = sqlite3.connect(str(tmp_path / "eventcron.db"), timeout=1)
                lock.execute("BEGIN EXCLUSIVE")
                try:
                    locked = await client.get(f"{base}/healthz", timeout=30)
                finally:
                    lock.rollback()
                    lock.close()
                again = await client.get(f"{base}/healthz", timeout=30)
        assert metric(text, 'eventcron_deliveries_total{outcome="delivered"}') >= 4
        assert metric(text, 'eventcron_deliveries_total{outcome="failed"}') >= 1
        assert metric(text, 'eventcron_attempts_total{result="2xx"}') >= 4
        assert metric(text, 'eventcron_attempts_total{result="4xx"}') >= 1
        assert metric(text, "eventcron_request_duration_seconds_count") >= 5
        assert metric(text, 'eventcron_ledger_rows{state="delivered"}') >= 2
        assert metric(text, 'eventcron_next_fire_timestamp_seconds{schedule="beat"}') > (
            time.time() - 5)
        assert metric(text, "eventcron_token_expiry_timestamp_seconds") > time.time()
        assert metric(text, "eventcron_reload_failures_total") == 0
        assert health.status_code == 200 and health.json() == {"ok": True, "problems": []}
        assert missing.status_code == 404
        assert locked.status_code == 503
        assert "the ledger did not take a write" in locked.json()["problems"][0]
        assert again.status_code == 200

    asyncio.run(scenario())


def test_metrics_are_off_unless_asked(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, BODY) as run:
            assert run.daemon.metrics_server is None

    asyncio.run(scenario())
