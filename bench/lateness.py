"""Lateness: many schedules due in the same minute; how late does each one's request leave?

Measured at the receiver: nginx logs each request's arrival ($msec) and Idempotency-Key,
which names the schedule and the nominal time it belongs to.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Figure
from bench.nginx import nginx
from eventcron import config
from eventcron.clock import SystemClock
from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.delivery.auth import Token
from eventcron.delivery.sender import Sender
from eventcron.ledger import Ledger, event_ids
from eventcron.service.daemon import Daemon
from eventcron.testing import make_token

TARGET_P99_MS = 50.0
CONCURRENCY = 256  # requests in flight: a burst of due events is what this measures
STALL = 0.5  # seconds the event loop is blocked shortly before the fires are due


def _file(folder: Path, url: str, schedules: int) -> Path:
    lines = ["version: 1",
             f"endpoint: {{url: \"{url}\", token: {{file: token}}, concurrency: {CONCURRENCY}}}",
             "schedules:"]
    lines += [f"  - {{id: s{i:04d}, event_type: \"bench:late\", cron: \"* * * * *\","
              f" users: [u{i:04d}]}}" for i in range(schedules)]
    path = folder / "schedules.yaml"
    path.write_text("\n".join(lines) + "\n")
    (folder / "token").write_text(make_token("s" * 40, expires_in=30 * 86400, now=time.time()))
    return path


async def _run(path: Path, stall: bool) -> datetime:
    """Run the daemon through the next minute boundary; return that nominal time."""
    cfg = config.load(path)
    daemon = Daemon(cfg, auth.load_token(cfg.endpoint.token), Ledger.open(cfg.database),
                    clock=SystemClock(), watch=False)
    task = asyncio.create_task(daemon.run())
    now = time.time()
    nominal = datetime.fromtimestamp((int(now) // 60 + 1) * 60, UTC)
    if nominal.timestamp() - now < 4:  # too close to start up and enqueue: take the next
        nominal = datetime.fromtimestamp(nominal.timestamp() + 60, UTC)
    if stall:
        # Block the loop across the moment the fires are handed over (FIRE_LEAD, 2 s,
        # before they are due) and while they are enqueued.
        await asyncio.sleep(max(0.0, nominal.timestamp() - 2.2 - time.time()))
        time.sleep(STALL)  # noqa: ASYNC251 - the stall is the point
    await asyncio.sleep(max(0.0, nominal.timestamp() + 3 - time.time()))
    daemon.request_stop()
    await task
    return nominal


def measure(schedules: int, *, stall: bool = False) -> tuple[list[float], int]:
    """Return the lateness (ms) of each schedule's request, and how many arrived."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-late-"))
    with nginx(log_timing=True) as (url, log):
        path = _file(folder, url, schedules)
        nominal = asyncio.run(_run(path, stall))
        time.sleep(0.5)
        assert log is not None
        arrivals: dict[str, float] = {}
        for line in log.read_text().splitlines():
            at, key = line.split()
            arrivals.setdefault(key, float(at))
    t = int(nominal.timestamp() * 1000)
    late = []
    for i in range(schedules):
        key = event_ids(f"s{i:04d}", "bench:late", t)(f"u{i:04d}")
        if key in arrivals:
            late.append((arrivals[key] - nominal.timestamp()) * 1000)
    return late, len(late)


async def _burst(url: str, n: int) -> float:
    """Send n requests at once with eventcron's HTTP stack; return the start time."""
    sender = Sender(url, Token("a.b.c", TokenSource("env", "X")), timeout=10,
                    concurrency=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    now = datetime.now(UTC)

    async def one(i: int) -> None:
        async with gate:
            await sender.send(f"burst-{i}", f"u{i}", "bench:late", "{}", now)

    began = time.time()
    await asyncio.gather(*(one(i) for i in range(n)))
    await sender.aclose()
    return began


def bare_burst(n: int) -> list[float]:
    """The floor: how late the i-th of n requests sent at once arrives, with no scheduler."""
    with nginx(log_timing=True) as (url, log):
        began = asyncio.run(_burst(url, n))
        time.sleep(0.3)
        assert log is not None
        return [(float(line.split()[0]) - began) * 1000
                for line in log.read_text().splitlines()]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def run(schedules: int) -> list[Figure]:
    """Measure a burst of ``schedules`` fires, a single one, and a burst after a stall."""
    alone, _ = measure(1)
    floor = p99(bare_burst(schedules))
    late, arrived = measure(schedules)
    stalled, arrived_stalled = measure(schedules, stall=True)
    base = (f"{schedules:,} requests sent at once, no scheduler: p99 {floor:.0f} ms;"
            f" 1 schedule alone: {alone[0]:.1f} ms")
    return [
        Figure(f"lateness p99, {schedules:,} schedules due at once", p99(late), "ms",
               f"<= {TARGET_P99_MS:g} ms, none lost",
               p99(late) <= TARGET_P99_MS and arrived == schedules, base, floor / p99(late),
               note=f"{arrived}/{schedules} arrived; median {statistics.median(late):.1f} ms,"
                    f" max {max(late):.1f} ms; {CONCURRENCY} requests in flight at most"),
        Figure(f"lateness p99, same, event loop blocked {STALL:g} s just before", p99(stalled),
               "ms", f"<= {TARGET_P99_MS:g} ms, none lost",
               p99(stalled) <= TARGET_P99_MS and arrived_stalled == schedules, base,
               floor / p99(stalled),
               note=f"{arrived_stalled}/{schedules} arrived; max {max(stalled):.1f} ms"),
    ]
