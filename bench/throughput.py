"""Throughput: a campaign from a CSV, fire -> ledger -> HTTP -> ledger, against bare loops."""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.common import Figure, write_csv
from eventcron import config
from eventcron.clock import SystemClock
from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.delivery.auth import Token
from eventcron.delivery.retry import Decision, Outcome
from eventcron.delivery.sender import Sender
from eventcron.ledger import Claimed, Ledger
from eventcron.service.daemon import Daemon
from eventcron.testing import make_token

CONCURRENCY = 64  # requests in flight, for eventcron and every baseline alike
TARGET_RATE = 2000.0  # deliveries/s
TARGET_RATIO = 0.75  # of the bare loop on the same HTTP stack
BODY = b'{"app_user_id":"u","event_type":"bench:tick","data":{"plan":"p1"}}'


def cpu_seconds() -> float:
    """Return the CPU time this process has used so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _loop(send: object, n: int, concurrency: int) -> float:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()  # type: ignore[operator]

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - began)


async def bare_sender(url: str, n: int) -> tuple[float, float]:
    """The same HTTP stack as eventcron (its Sender), with no ledger and no scheduling.

    Returns requests/s and CPU microseconds per request.
    """
    sender = Sender(url, Token("a.b.c", TokenSource("env", "X")), timeout=10,
                    concurrency=CONCURRENCY)
    now = datetime.now(UTC)
    began = cpu_seconds()
    try:
        rate = await _loop(lambda: sender.send("k", "u", "bench:tick", '{"plan":"p1"}', now),
                           n, CONCURRENCY)
        return rate, (cpu_seconds() - began) / n * 1e6
    finally:
        await sender.aclose()


async def httpx_default(url: str, n: int) -> float:
    """httpx's AsyncClient with its default transport: why eventcron does not use it."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:
        async def one() -> None:
            r = await client.post(url, content=BODY,
                                  headers={"Content-Type": "application/json"})
            r.raise_for_status()
        return await _loop(one, n, CONCURRENCY)


async def campaign(url: str, n: int) -> tuple[float, float, dict[str, int]]:
    """Run the daemon on one fire of ``n`` users.

    Returns deliveries/s, CPU microseconds per delivery (every thread of the daemon, from
    start-up to shutdown) and the ledger's counts by state.
    """
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-tp-"))
    write_csv(folder / "people.csv", n)
    (folder / "token").write_text(make_token("s" * 40, expires_in=30 * 86400, now=time.time()))
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    path = folder / "schedules.yaml"
    path.write_text(f"""\
version: 1
endpoint: {{url: "{url}", token: {{file: token}}, concurrency: {CONCURRENCY}, timeout: 10s}}
audiences:
  people: {{file: people.csv}}
schedules:
  - id: campaign
    event_type: "bench:tick"
    at: "{at.isoformat()}"
    audience: people
    data: {{plan: "${{user.plan}}"}}
""")
    cpu_began = cpu_seconds()
    cfg = config.load(path)
    done = asyncio.Event()
    delivered = 0
    last = 0.0

    def count(_row: Claimed, _outcome: Outcome, decision: Decision) -> None:
        nonlocal delivered, last
        if decision.status == "delivered":
            delivered += 1
            last = time.time()
            if delivered == n:
                done.set()

    # Fire at the nominal time itself (no lead), so the measured span is the whole
    # pipeline: reading the CSV, enqueueing, sending, recording.
    daemon = Daemon(cfg, auth.load_token(cfg.endpoint.token), Ledger.open(cfg.database),
                    clock=SystemClock(), on_result=count, watch=False,
                    fire_lead=timedelta(0))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(done.wait(), timeout=max(120.0, n / 200))
    # The clock stops when the ledger says every event is delivered, not at the last answer.
    reader = Ledger.open(cfg.database)
    try:
        while reader.counts()["delivered"] < n:  # noqa: ASYNC110 - polling another process's view
            await asyncio.sleep(0.01)
        last = time.time()
    finally:
        reader.close()
    daemon.request_stop()
    await task
    cpu = (cpu_seconds() - cpu_began) / n * 1e6
    ledger = Ledger.open(cfg.database)
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    return n / (last - at.timestamp()), cpu, counts


def run(url: str, n: int, runs: int = 5) -> list[Figure]:
    """Measure eventcron and the bare loop in ``runs`` back-to-back pairs; report medians.

    The ratio is the median of each pair's ratio: a pair runs within half a minute, so
    drift in what else the shared machine is doing affects both sides of it alike.
    """
    bares: list[float] = []
    rates: list[float] = []
    ratios: list[float] = []
    bare_cpu: list[float] = []
    cpu: list[float] = []
    complete = True
    for _ in range(runs):
        bare, bare_us = asyncio.run(bare_sender(url, max(n // 3, 2000)))
        rate, us, counts = asyncio.run(campaign(url, n))
        bares.append(bare)
        rates.append(rate)
        ratios.append(rate / bare)
        bare_cpu.append(bare_us)
        cpu.append(us)
        complete = complete and counts["delivered"] == n
    bare, rate, ratio = (statistics.median(v) for v in (bares, rates, ratios))
    default = asyncio.run(httpx_default(url, min(3000, n // 10 + 500)))
    spread = (f"{runs} back-to-back pairs: eventcron {min(rates):,.0f} to {max(rates):,.0f}/s,"
              f" bare loop {min(bares):,.0f} to {max(bares):,.0f}/s, pair ratios"
              f" {min(ratios):.2f} to {max(ratios):.2f}x; CPU per delivery (all threads,"
              f" median) eventcron {statistics.median(cpu):.0f} us, bare loop"
              f" {statistics.median(bare_cpu):.0f} us")
    return [
        Figure(f"throughput, {n:,}-user campaign end to end", rate, "deliveries/s",
               f">= {TARGET_RATE:,.0f}/s and >= {TARGET_RATIO}x bare",
               rate >= TARGET_RATE and ratio >= TARGET_RATIO and complete,
               f"bare loop, same HTTP stack: {bare:,.0f}/s", ratio,
               note=f"{spread}; every run left all {n:,} rows delivered in the ledger"
                    if complete else f"{spread}; SOME ROWS WERE NOT DELIVERED"),
        Figure(f"reference: httpx AsyncClient, default transport, {CONCURRENCY} in flight",
               default, "requests/s", "", None, f"bare loop: {bare:,.0f}/s", default / bare),
    ]
