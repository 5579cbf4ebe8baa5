"""Running a real daemon in-process against a real sink, over loopback, for a test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from eventcron import config
from eventcron.clock import Clock, SystemClock
from eventcron.delivery import auth
from eventcron.ledger import PASSED_BEFORE_LOAD, Filters, Ledger, Row, deliveries
from eventcron.service.daemon import Daemon
from eventcron.testing import Faults, Sink, make_token
from eventcron.timing import AtTiming
from tests.acceptance.conftest import eventcron_command

SECRET = secrets.token_urlsafe(32)
FIRE_WITHIN = 120.0  # seconds `eventcron fire` is tried for before a test gives up
# How far ahead to put an `at:` time that the daemon itself must fire, tried in turn: a
# daemon that loads its plan after the time skips it (Running.passed_before_load), and the
# test starts over with the next, which only a very loaded machine ever needs.
AHEAD = (1.5, 5.0, 15.0)


def soon(ahead: float = 1.5) -> str:
    """An ``at:`` time ``ahead`` to ``ahead + 1`` seconds from now, in whole seconds.

    Whole seconds (RFC 3339), so the time in the file is the occurrence `eventcron fire`
    is given. The daemon fires it by itself when it is ready in time (rows are enqueued
    2 s early); on a loaded machine it may not be, and then :func:`running` fires it.
    """
    t = (datetime.now(UTC) + timedelta(seconds=ahead + 1)).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def fire(path: Path, schedule_id: str, occurrence: datetime, *,
               within: float = FIRE_WITHIN) -> str:
    """Run ``eventcron --config PATH fire SCHEDULE --occurrence T`` until it succeeds.

    It is idempotent (the ledger's unique key adds nothing already enqueued), so a try
    that failed, for instance on a ledger locked beyond its busy timeout, is simply
    repeated. Returns what the command printed.
    """
    argv = [eventcron_command(), "--config", str(path), "fire", schedule_id,
            "--occurrence", occurrence.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
    deadline = time.monotonic() + within
    while True:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=path.parent, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        communicating = asyncio.ensure_future(proc.communicate())
        try:
            out, _ = await asyncio.shield(communicating)
        except asyncio.CancelledError:
            # The test is over: let the command finish, so that no write of it lands
            # after the test has read the ledger.
            await communicating
            raise
        output = out.decode(errors="replace")
        if proc.returncode == 0:
            return output
        if time.monotonic() > deadline:
            raise AssertionError(f"eventcron fire {schedule_id} kept failing:\n{output}")
        await asyncio.sleep(1)


def write_schedule(folder: Path, url: str, body: str, *, delivery: str = "",
                   name: str = "schedules.yaml", timeout: str = "2s",
                   rate_limit: str | None = None, concurrency: int | None = None) -> Path:
    """Write a schedule file for ``url`` with the token file beside it."""
    path = folder / name
    delivery_block = textwrap.indent(textwrap.dedent(delivery).strip(), "  ") if delivery else ""
    path.write_text(
        "version: 1\n"
        f"endpoint:\n  url: {url}\n  token: {{file: token}}\n  timeout: {timeout}\n"
        + (f"  rate_limit: {rate_limit}\n" if rate_limit else "")
        + (f"  concurrency: {concurrency}\n" if concurrency else "")
        + (f"delivery:\n{delivery_block}\n" if delivery_block else "")
        + textwrap.dedent(body))
    return path


def write_token(folder: Path, secret: str = SECRET, *, expires_in: float = 30 * 86400) -> str:
    """Write a token signed with ``secret`` to ``folder/token`` and return it."""
    token = make_token(secret, expires_in=expires_in, now=time.time())
    path = folder / "token"
    path.write_text(token)
    path.chmod(0o600)
    return token


@dataclass
class Running:
    """A daemon running as a task, with its sink."""

    daemon: Daemon
    sink: Sink
    task: asyncio.Task[int]
    db_url: str
    path: Path
    fired: dict[str, str] = field(default_factory=dict)  # schedule id: `fire`'s output
    firing: list[asyncio.Task[None]] = field(default_factory=list)  # fire_when_due tasks

    async def fire_when_due(self, schedule_id: str, occurrence: datetime) -> None:
        """Once ``occurrence`` has passed, fire it with ``eventcron fire`` if the daemon could not.

        A daemon ready in time fires it itself, and the test checks that it did; only if it
        loaded its plan after that time (a loaded machine) and recorded the occurrence as
        "passed before the schedule was loaded" does this send it, as an operator would.
        Nothing is fired for a schedule the test has removed, disabled or retimed meanwhile.
        """
        delay = (occurrence - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(delay, 0) + 0.05)
        schedule = self.daemon.firing.state.config.schedule(schedule_id)
        if schedule is None or schedule_id not in self.daemon.firing.state.active:
            return
        timing = schedule.timing(config.DEFAULT_ZONE)
        if (isinstance(timing, AtTiming) and timing.instant == occurrence
                and self.passed_before_load(schedule_id)):
            self.fired[schedule_id] = await fire(self.path, schedule_id, occurrence)

    async def until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        """Wait until ``predicate()`` holds; fail with the sink's view if it never does."""
        deadline = time.monotonic() + within
        while not predicate():
            if self.task.done():
                self.task.result()
                raise AssertionError("the daemon stopped early")
            for firing in self.firing:
                if firing.done() and not firing.cancelled():
                    firing.result()  # `eventcron fire` kept failing: say so
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; the sink saw {len(self.sink.records)}"
                                     f" requests: {[r.status for r in self.sink.records][:50]}")
            await asyncio.sleep(0.02)

    def rows(self, filters: Filters | None = None) -> list[Row]:
        """Read the ledger through a separate connection."""
        ledger = Ledger.open(self.db_url)
        try:
            return ledger.rows(filters or Filters())
        finally:
            ledger.close()

    def passed_before_load(self, schedule_id: str) -> bool:
        """Tell whether the daemon loaded ``schedule_id`` after its ``at:`` time.

        It then records the occurrence as skipped ("passed before the schedule was
        loaded") and does not fire it by itself; a test that needs the daemon's own fire
        starts over with a later time (see :data:`AHEAD`).
        """
        return any(f.status == "skipped" and f.reason == PASSED_BEFORE_LOAD
                   for f in self.daemon.db.ledger.fires_of(schedule_id))

    def claimed(self) -> int:
        """Count the pending rows an instance holds a claim on (through a separate connection)."""
        ledger = Ledger.open(self.db_url)
        try:
            with ledger.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(deliveries).where(
                    deliveries.c.status == "pending",
                    deliveries.c.claimed_by.is_not(None))).scalar_one())
        finally:
            ledger.close()


@contextlib.asynccontextmanager
async def running(folder: Path, body: str, *, delivery: str = "",
                  faults: Faults | None = None, clock: Clock | None = None,
                  sink: Sink | None = None, token_secret: str = SECRET,
                  request_timeout: str = "2s", rate_limit: str | None = None,
                  concurrency: int | None = None, fire_due: bool = True,
                  **daemon_options: Any) -> AsyncIterator[Running]:
    """Start a sink (unless given) and a daemon on a schedule body; stop both after.

    With ``fire_due``, every enabled ``at:`` schedule of the body is also fired with
    ``eventcron fire`` once its time has passed (see :meth:`Running.fire_when_due`), so
    that a daemon that started too late for it, on a loaded machine, still sends it.
    """
    own_sink = sink is None
    if sink is None:
        sink = Sink(secret=SECRET, faults=faults)
        await sink.start()
    try:
        write_token(folder, token_secret)
        path = write_schedule(folder, sink.url, body, delivery=delivery,
                              timeout=request_timeout, rate_limit=rate_limit,
                              concurrency=concurrency)
        cfg = config.load(path)
        ledger = Ledger.open(cfg.database)
        options: dict[str, Any] = {"watch": False, "drain_timeout": 2.0, **daemon_options}
        daemon = Daemon(cfg, auth.load_token(cfg.endpoint.token), ledger,
                        clock=clock or SystemClock(), **options)
        task = asyncio.create_task(daemon.run())
        run = Running(daemon, sink, task, cfg.database, path)
        firing = run.firing
        try:
            await run.until(lambda: daemon.ready, within=60)
            if fire_due:
                for schedule in cfg.schedules:
                    timing = schedule.timing(config.DEFAULT_ZONE)
                    if schedule.enabled and isinstance(timing, AtTiming):
                        firing.append(asyncio.create_task(
                            run.fire_when_due(schedule.id, timing.instant)))
            yield run
        finally:
            for t in firing:
                t.cancel()
            await asyncio.gather(*firing, return_exceptions=True)
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
    finally:
        if own_sink:
            await sink.stop()


def with_a_later_time_until_in_time(tmp_path: Path,
                                    scenario: Callable[[Path, float], Coroutine[Any, Any, bool]],
                                    ) -> None:
    """Run ``scenario(folder, ahead)`` with each lead of :data:`AHEAD` until it returns True.

    For tests that need the daemon's own fire of an ``at:`` occurrence: a scenario returns
    False when the daemon loaded its plan after that time (a loaded machine), and it is
    started over, in a fresh folder, with a later time.
    """
    for i, ahead in enumerate(AHEAD):
        folder = tmp_path / f"try{i}"
        folder.mkdir()
        if asyncio.run(scenario(folder, ahead)):
            return
    pytest.fail(f"the daemon never started before its at: time, even {AHEAD[-1]:g} s ahead")
