"""Stand-ins for the unit tests of firing and dispatch: a clock, a sender, a config.

Nothing here touches the network or reads the real clock's "now"; files are written only
under the test's ``tmp_path``, and the ledger is the ``memory_ledger`` fixture's, reached
through a :class:`LedgerThread` as the daemon does.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import select

from eventcron import config
from eventcron.config import Config, TokenSource
from eventcron.delivery.auth import Token
from eventcron.delivery.retry import Outcome
from eventcron.delivery.sender import Sender
from eventcron.ledger import Ledger, LedgerThread, deliveries

T0 = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)  # between two whole minutes


class FakeClock:
    """A clock that shows what the test sets, and moves only when told."""

    def __init__(self, now: datetime = T0) -> None:
        self.t = now

    def now(self) -> datetime:
        """Return the time the test set."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move the time forward."""
        self.t += timedelta(seconds=seconds)


class FakeSender:
    """Answers each send as ``answer(event_id, app_user_id)`` says; counts what it saw.

    Each request stays in flight for ``latency`` (real) seconds, so concurrency shows.
    """

    def __init__(self, answer: Callable[[str, str], Outcome] | None = None,
                 *, latency: float = 0.0) -> None:
        self.answer = answer or (lambda _e, _u: Outcome("delivered", 200))
        self.latency = latency
        self.sent: list[tuple[str, str]] = []  # (event_id, app_user_id), in order
        self.in_flight = 0
        self.max_in_flight = 0
        self.token = Token("not-a-real-token", TokenSource("file", "/nonexistent/token"))

    async def send(self, event_id: str, app_user_id: str, event_type: str, data_json: str,
                   now: datetime) -> Outcome:
        """Record the request and answer it, after ``latency`` seconds."""
        self.sent.append((event_id, app_user_id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            return self.answer(event_id, app_user_id)
        finally:
            self.in_flight -= 1

    def as_sender(self) -> Sender:
        """Type it as the dispatcher's sender (the dispatcher only calls send and token)."""
        return cast(Sender, self)


def write_config(folder: Path, schedules: str, *, delivery: str = "",
                 name: str = "schedules.yaml", extra: str = "") -> Config:
    """Write a schedule file (``schedules`` is the list under ``schedules:``) and load it."""
    path = folder / name
    block = textwrap.indent(textwrap.dedent(delivery).strip(), "  ") if delivery else ""
    path.write_text(
        "version: 1\n"
        "endpoint:\n  url: http://127.0.0.1:9/events\n  token: {file: token}\n"
        + (f"delivery:\n{block}\n" if block else "")
        + textwrap.dedent(extra)
        + "schedules:\n" + textwrap.indent(textwrap.dedent(schedules).strip(), "  ") + "\n")
    return config.load(path)


@asynccontextmanager
async def ledger_thread(ledger: Ledger) -> AsyncIterator[LedgerThread]:
    """Run ledger calls on a worker thread, as the daemon does; stop the thread after."""
    db = LedgerThread(ledger)
    try:
        yield db
    finally:
        db.close()


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (in real time, briefly) until ``predicate()`` holds; fail if it never does."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.005)


def expiries(ledger: Ledger, schedule_id: str) -> dict[str, tuple[int, int, int]]:
    """Return ``app_user_id -> (scheduled_for, next_attempt_at, expires_at)`` of a schedule.

    Run it on the ledger thread (``db.call``): it reads outside the ledger's own methods.
    """
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.app_user_id, deliveries.c.scheduled_for,
                                   deliveries.c.next_attempt_at, deliveries.c.expires_at)
                            .where(deliveries.c.schedule_id == schedule_id)).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
