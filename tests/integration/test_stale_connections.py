"""Receivers that close idle keep-alive connections: no attempt is lost to a stale one.

A server closes an idle connection after its own timeout; a request sent on it just then
fails before any answer. The transport sends such a request again at once on a new
connection (once, same Idempotency-Key, no attempt spent), and keeps idle connections for
less time than common servers do. The receivers here are small HTTP/1.1 servers on loopback
that close connections exactly when a test needs them to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from eventcron import config
from eventcron.clock import SystemClock
from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.delivery.auth import Token
from eventcron.delivery.sender import Sender
from eventcron.ledger import Filters, Ledger, Row
from eventcron.service.daemon import Daemon
from tests.integration.harness import write_token

Action = Literal["answer", "close", "reset", "partial", "silent"]
OK: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
GUNICORN_IDLE = 2.0  # seconds: gunicorn's default keep-alive, the shortest common one
# A request that reaches a server this close to its idle limit meets the close on the way:
# on loopback the race is microseconds wide, so the receiver widens it to be deterministic.
RACE = 0.3  # seconds
LATE = 2.0  # seconds: how late a delivery may be (a backoff would make it later)
# How far ahead of the reload that loads it the first send is put (doubled while a loaded
# machine makes the reload finish later than that).
LEAD = timedelta(seconds=2)
# Sends 2 s apart. A connection kept that long meets the server's close about every other
# send on loopback, so over six sends a 30 s keep-alive fails the test all but surely.
SENDS = 6


@dataclass
class Seen:
    """One request as the receiver saw it."""

    key: str | None  # Idempotency-Key
    connection: int  # accepted connections before this one's
    index: int  # requests before it on its connection
    idle: float  # seconds its connection was idle before it arrived (0 for the first)
    at: float  # Unix time its head arrived
    action: Action = "answer"


Policy = Callable[[Seen], Action]


def close_kept_alive(how: Action) -> Policy:
    """Close (before answering) every connection its second request arrives on."""
    return lambda seen: how if seen.index > 0 else "answer"


class Receiver:
    """An HTTP/1.1 server on loopback that answers 200 unless ``policy`` says otherwise.

    ``close`` closes the connection (FIN) after reading the request, ``reset`` resets it
    (RST), ``partial`` sends half a status line then closes, ``silent`` never answers.
    """

    def __init__(self, policy: Policy, *, idle_timeout: float = 30.0) -> None:
        self.policy = policy
        self.idle_timeout = idle_timeout
        self.seen: list[Seen] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/webhook/event"

    def of(self, key: str) -> list[Seen]:
        """Requests that carried ``key``, in arrival order."""
        return [s for s in self.seen if s.key == key]

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled when the receiver stops. Ending cancelled would make asyncio 3.11 log an
        # error from the callback start_server attaches to this task, so end normally.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._converse(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        idle_since: float | None = None
        index = 0
        try:
            while True:
                try:
                    # The idle timer of a real server: a quiet connection is closed.
                    async with asyncio.timeout(self.idle_timeout if index else None):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                idle = time.monotonic() - idle_since if idle_since is not None else 0.0
                headers = dict(line.split(": ", 1) for line in
                               head.decode("latin-1").split("\r\n")[1:] if ": " in line)
                headers = {k.lower(): v for k, v in headers.items()}
                await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(headers.get("idempotency-key"), number, index, idle, time.time())
                seen.action = self.policy(seen)
                self.seen.append(seen)
                if seen.action == "close":
                    return
                if seen.action == "reset":
                    # Linger 0: close() sends RST at once instead of FIN.
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if seen.action == "partial":
                    writer.write(b"HTTP/1.1 2")
                    await writer.drain()
                    return
                if seen.action == "silent":
                    await asyncio.sleep(3600)
                writer.write(OK)
                await writer.drain()
                idle_since = time.monotonic()
                index += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away


async def until(predicate: Callable[[], bool], within: float = 30.0,
                task: asyncio.Task[int] | None = None) -> None:
    """Wait until ``predicate()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if task is not None and task.done():
            task.result()
            raise AssertionError("the daemon stopped early")
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- the transport, through the Sender -------------------------------------------------------


def sender(url: str, *, timeout: float = 5.0) -> Sender:
    """A Sender on the real transport."""
    return Sender(url, Token("a.b.c", TokenSource("env", "X")), timeout=timeout, concurrency=4)


async def send(s: Sender, key: str) -> tuple[str, str | None]:
    """Send one event with Idempotency-Key ``key``; return the outcome's kind and error."""
    outcome = await s.send(key, "u_1", "a:b", "{}", datetime.now(UTC))
    return outcome.kind, outcome.error


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_request_on_a_connection_closed_while_idle_is_sent_again_at_once(
        how: Action, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventcron.transport")

    async def scenario() -> None:
        async with Receiver(close_kept_alive(how)) as receiver:
            s = sender(receiver.url)
            try:
                assert await send(s, "k1") == ("delivered", None)
                began = time.monotonic()
                assert await send(s, "k2") == ("delivered", None)
                took = time.monotonic() - began
            finally:
                await s.aclose()
        first, again = receiver.of("k2")
        assert (first.connection, first.index, first.action) == (0, 1, how)
        assert (again.connection, again.index, again.action) == (1, 0, "answer")
        assert took < 4.0  # well within the 5 s timeout: nothing was waited for
        (record,) = [r for r in caplog.records if r.name == "eventcron.transport"]
        assert record.levelno == logging.DEBUG and "k2" in record.getMessage()

    asyncio.run(scenario())


def test_the_resend_happens_once_then_the_failure_is_the_callers() -> None:
    async def scenario() -> None:
        async with Receiver(lambda seen: "answer" if seen.key == "k1" else "close") as receiver:
            s = sender(receiver.url)
            try:
                assert await send(s, "k1") == ("delivered", None)
                kind, error = await send(s, "k2")  # reused, resent once, failed again
                kind3, _ = await send(s, "k3")  # a new connection: failed, not resent
            finally:
                await s.aclose()
        assert (kind, kind3) == ("retry", "retry")
        assert error is not None and "Server disconnected" in error
        assert [(r.connection, r.index) for r in receiver.of("k2")] == [(0, 1), (1, 0)]
        assert [(r.connection, r.index) for r in receiver.of("k3")] == [(2, 0)]

    asyncio.run(scenario())


@pytest.mark.parametrize(("how", "timeout", "said"), [
    ("partial", 5.0, "the server broke the protocol: Server disconnected during its answer"),
    ("silent", 1.0, "timed out after 1s")])
def test_no_resend_after_part_of_an_answer_or_a_timeout(how: Action, timeout: float,
                                                         said: str) -> None:
    async def scenario() -> None:
        async with Receiver(close_kept_alive(how)) as receiver:
            s = sender(receiver.url)
            try:
                assert await send(s, "k1") == ("delivered", None)
                s.timeout = timeout
                kind, error = await send(s, "k2")
                # A resend would happen inside send(): the receiver has seen all there is.
            finally:
                await s.aclose()
        assert (kind, error) == ("retry", said)
        assert [(r.connection, r.index) for r in receiver.of("k2")] == [(0, 1)]

    asyncio.run(scenario())


# -- the daemon ------------------------------------------------------------------------------


def iso(t: datetime) -> str:
    """``t`` as the schedule file takes it."""
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


DORMANT = """
schedules:
  - {id: s, event_type: "a:b", at: "2099-01-01T00:00:00Z", users: [u1]}
"""


@dataclass
class Running:
    """A daemon under test: its rows, and a way to give it a plan that starts ahead."""

    daemon: Daemon
    path: Path
    head: str  # the file's endpoint and delivery sections

    def rows(self) -> list[Row]:
        ledger = Ledger.open(self.daemon.firing.state.config.database)
        try:
            return sorted(ledger.rows(Filters()), key=lambda r: (r.scheduled_for, r.app_user_id))
        finally:
            ledger.close()

    async def plan(self, schedules: Callable[[datetime], str]) -> datetime:
        """Load ``schedules(start)`` with ``start`` ahead of the moment the load completes.

        The lead is measured from the reload, not from process start: if a loaded machine
        makes the reload finish after ``start``, it is tried again with a longer lead.
        """
        lead = LEAD
        while True:
            start = datetime.now(UTC).replace(microsecond=0) + lead
            self.path.write_text(self.head + textwrap.dedent(schedules(start)))
            assert await self.daemon.reload("test")
            if datetime.now(UTC) < start - timedelta(seconds=0.5):
                return start
            lead *= 2


@contextlib.asynccontextmanager
async def daemon_against(folder: Path, url: str, *, delivery: str,
                         concurrency: int = 8) -> AsyncIterator[Running]:
    """Run a daemon against ``url`` on a dormant plan; the test then gives it its own."""
    write_token(folder)
    path = folder / "schedules.yaml"
    head = (f"version: 1\nendpoint:\n  url: {url}\n  token: {{file: token}}\n  timeout: 5s\n"
            f"  concurrency: {concurrency}\n"
            f"delivery:\n{textwrap.indent(textwrap.dedent(delivery).strip(), '  ')}\n")
    path.write_text(head + textwrap.dedent(DORMANT))
    cfg = config.load(path)
    daemon = Daemon(cfg, auth.load_token(cfg.endpoint.token), Ledger.open(cfg.database),
                    clock=SystemClock(), watch=False, drain_timeout=2.0)
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: daemon.ready, task=task)
        yield Running(daemon, path, head)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)


def lateness(receiver: Receiver, row: Row) -> float:
    """Seconds from the row's nominal time to the request the receiver answered."""
    (answered,) = [s for s in receiver.of(row.event_id) if s.action == "answer"]
    return answered.at - row.scheduled_for / 1000


@pytest.mark.slow
def test_a_receiver_closing_every_kept_alive_connection_costs_no_attempt(
        tmp_path: Path) -> None:
    users = [f"u{i}" for i in range(6)]

    async def scenario() -> None:
        async with (Receiver(close_kept_alive("close")) as receiver,
                    daemon_against(tmp_path, receiver.url,
                                   delivery="initial_backoff: 5s\nmax_backoff: 5s",
                                   concurrency=1) as run):
            await run.plan(lambda at: f"""
                schedules:
                  - {{id: s, event_type: "a:b", at: "{iso(at)}", users: [{", ".join(users)}]}}
                """)
            # One request in flight at a time: each reuses the connection the last one left.
            await until(lambda: [r.status for r in run.rows()] == ["delivered"] * len(users))
            delivered = run.rows()
        late = {r.app_user_id: round(lateness(receiver, r), 3) for r in delivered}
        print(f"\nattempts {[r.attempts for r in delivered]}; lateness (s) {late};"
              f" closed unanswered: {sum(s.action == 'close' for s in receiver.seen)}")
        assert [r.attempts for r in delivered] == [1] * len(users)
        assert all(0 <= t < LATE for t in late.values()), late
        assert all(r.last_error is None for r in delivered)
        closed = [s for s in receiver.seen if s.action == "close"]
        assert closed  # the receiver did close connections under requests
        assert all(len(receiver.of(s.key or "")) == 2 for s in closed)  # each resent once

    asyncio.run(scenario())


@pytest.mark.slow
def test_sends_spaced_by_a_servers_idle_timeout_go_out_once_on_time(tmp_path: Path) -> None:
    def idle_close(seen: Seen) -> Action:
        # gunicorn's 2 s idle timer, firing while a request that came close to it is on
        # the wire: that request meets a closed connection.
        return "close" if seen.idle >= GUNICORN_IDLE - RACE else "answer"

    def every_2s(start: datetime) -> str:
        ends = start + timedelta(seconds=2 * (SENDS - 1))
        return f"""
            schedules:
              - {{id: s, event_type: "a:b", every: 2s, starts: "{iso(start)}",
                  ends: "{iso(ends)}", users: [u1]}}
            """

    async def scenario() -> None:
        async with (Receiver(idle_close, idle_timeout=GUNICORN_IDLE) as receiver,
                    daemon_against(tmp_path, receiver.url,
                                   delivery="initial_backoff: 5s\nmax_backoff: 5s") as run):
            start = await run.plan(every_2s)

            def sent() -> list[Row]:
                return [r for r in run.rows() if r.scheduled_for >= start.timestamp() * 1000]

            await until(lambda: len(sent()) == SENDS
                        and all(r.status == "delivered" for r in sent()), within=60)
            delivered = sent()
        late = [round(lateness(receiver, r), 3) for r in delivered]
        idle = [round(s.idle, 3) for s in receiver.seen]
        print(f"\nattempts {[r.attempts for r in delivered]}; lateness (s) {late};"
              f" idle before each request (s) {idle}")
        assert [r.attempts for r in delivered] == [1] * SENDS
        assert all(0 <= t < LATE for t in late), late
        # Connections were not kept long enough to meet the server's close at all.
        assert [s.action for s in receiver.seen] == ["answer"] * SENDS

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_receiver_that_always_closes_gets_one_resend_then_normal_retries(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        keys: list[str | None] = []

        def answer_only_the_first(seen: Seen) -> Action:
            keys.append(seen.key)
            return "answer" if seen.key == keys[0] else "close"

        async with (Receiver(answer_only_the_first) as receiver,
                    daemon_against(tmp_path, receiver.url,
                                   delivery="max_attempts: 3\ninitial_backoff: 100ms\n"
                                            "max_backoff: 200ms", concurrency=1) as run):
            await run.plan(lambda at: f"""
                schedules:
                  - {{id: s, event_type: "a:b", at: "{iso(at)}", users: [u1, u2]}}
                """)
            await until(lambda: sorted(r.status for r in run.rows()) == ["delivered", "failed"])
            # "failed" is final and its attempts were all answered or dropped before it was
            # recorded: the receiver has seen every request there will be for it.
            by_status = {r.status: r for r in run.rows()}
        failed = by_status["failed"]
        requests = receiver.of(failed.event_id)
        print(f"\nrequests for the failed row (connection, index): "
              f"{[(s.connection, s.index) for s in requests]}")
        assert by_status["delivered"].attempts == 1
        assert failed.attempts == 3
        assert failed.last_error is not None and "Server disconnected" in failed.last_error
        # Three attempts, and one resend: the first attempt's, on the reused connection.
        assert [s.index for s in requests] == [1, 0, 0, 0]
        assert len({s.connection for s in requests}) == 4

    asyncio.run(scenario())
