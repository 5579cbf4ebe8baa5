"""Running a real daemon in-process against a real sink, over loopback, for a test."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventcron import auth, config
from eventcron.clock import Clock, SystemClock
from eventcron.daemon import Daemon
from eventcron.ledger import Filters, Ledger, Row
from eventcron.sink import Faults, Sink, make_token

SECRET = secrets.token_urlsafe(32)


def write_schedule(folder: Path, url: str, body: str, *, delivery: str = "",
                   name: str = "schedules.yaml", timeout: str = "2s",
                   rate_limit: str | None = None) -> Path:
    """Write a schedule file for ``url`` with the token file beside it."""
    path = folder / name
    delivery_block = textwrap.indent(textwrap.dedent(delivery).strip(), "  ") if delivery else ""
    path.write_text(
        "version: 1\n"
        f"endpoint:\n  url: {url}\n  token: {{file: token}}\n  timeout: {timeout}\n"
        + (f"  rate_limit: {rate_limit}\n" if rate_limit else "")
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

    async def until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        """Wait until ``predicate()`` holds; fail with the sink's view if it never does."""
        deadline = time.monotonic() + within
        while not predicate():
            if self.task.done():
                self.task.result()
                raise AssertionError("the daemon stopped early")
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


@contextlib.asynccontextmanager
async def running(folder: Path, body: str, *, delivery: str = "",
                  faults: Faults | None = None, clock: Clock | None = None,
                  sink: Sink | None = None, token_secret: str = SECRET,
                  request_timeout: str = "2s", rate_limit: str | None = None,
                  **daemon_options: Any) -> AsyncIterator[Running]:
    """Start a sink (unless given) and a daemon on a schedule body; stop both after."""
    own_sink = sink is None
    if sink is None:
        sink = Sink(secret=SECRET, faults=faults)
        await sink.start()
    try:
        write_token(folder, token_secret)
        path = write_schedule(folder, sink.url, body, delivery=delivery,
                              timeout=request_timeout, rate_limit=rate_limit)
        cfg = config.load(path)
        ledger = Ledger.open(cfg.database)
        options: dict[str, Any] = {"watch": False, "drain_timeout": 2.0, **daemon_options}
        daemon = Daemon(cfg, auth.load_token(cfg.endpoint.token), ledger,
                        clock=clock or SystemClock(), **options)
        task = asyncio.create_task(daemon.run())
        run = Running(daemon, sink, task, cfg.database)
        try:
            await run.until(lambda: daemon.ready, within=10)
            yield run
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
    finally:
        if own_sink:
            await sink.stop()
