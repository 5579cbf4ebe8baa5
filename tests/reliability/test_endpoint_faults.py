"""A campaign against an endpoint that misbehaves in every way we know of.

Each scenario runs a real daemon against the real sink over loopback, sends a 300-user
campaign through the fault, and checks the invariants of tests/reliability/invariants.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import pytest

from eventcron.testing import Faults, Sink, make_token
from tests.integration.harness import SECRET, Running, running, soon
from tests.reliability.invariants import check, rows_of

USERS = 300
DELIVERY = """
max_attempts: 1000
initial_backoff: 50ms
max_backoff: 500ms
expires_after: 10m
"""

Action = Callable[[Running], Awaitable[None]]


async def nothing(_run: Running) -> None:
    return None


def once_retried(retries: int, faults: Faults) -> Action:
    """Keep the fault until it has cost ``retries`` retries, then switch to ``faults``.

    Counted, not timed: however late the campaign starts on a loaded machine, the fault
    really hits it.
    """
    async def act(run: Running) -> None:
        await run.until(lambda: run.daemon.dispatcher.stats.retried >= retries, within=120)
        run.sink.faults = faults
    return act


def outage(seconds: float) -> Action:
    """Down from the start, so every first attempt meets it; up again ``seconds`` after one
    has failed on it."""
    async def act(run: Running) -> None:
        await run.sink.go_down()
        await run.until(lambda: run.daemon.dispatcher.stats.retried > 0, within=120)
        await asyncio.sleep(seconds)  # the outage lasts a while, whatever is retried meanwhile
        await run.sink.come_up()
    return act


def flapping(down: float, up: float, cycles: int) -> Action:
    """Down until an attempt has failed on it, then up and down in turn ``cycles`` times."""
    async def act(run: Running) -> None:
        await run.sink.go_down()
        await run.until(lambda: run.daemon.dispatcher.stats.retried > 0, within=120)
        for _ in range(cycles):
            await run.sink.come_up()
            await asyncio.sleep(up)
            await run.sink.go_down()
            await asyncio.sleep(down)
        await run.sink.come_up()
    return act


async def revoke_then_swap(run: Running) -> None:
    await run.until(lambda: len(run.sink.delivered()) >= 50)
    run.sink.set_reject_token(run.daemon.connection.token.value)  # revoked: every request gets 401
    await run.until(lambda: run.daemon.dispatcher.auth_problem is not None)
    await run.until(lambda: run.daemon.dispatcher.inflight == 0)  # every answer is in
    folder = run.daemon.firing.state.config.path.parent
    token = make_token(SECRET, expires_in=86400, now=time.time(), claims={"v": 2})
    (folder / "token").write_text(token)
    run.daemon.request_reload()


SCENARIOS: dict[str, tuple[Faults, Action, Literal["never", "after_timeout"]]] = {
    "down for a while": (Faults(), outage(3.0), "never"),
    "flapping": (Faults(), flapping(0.4, 0.6, 3), "never"),
    "slow beyond the timeout": (Faults(latency=1.5), once_retried(32, Faults()),
                                "after_timeout"),
    "429 storm with Retry-After": (Faults(throttle_rate=0.6, retry_after=1),
                                   once_retried(10, Faults()), "never"),
    "5xx burst": (Faults(fail_rate=1.0, fail_status=502),
                  once_retried(150, Faults(fail_rate=0.2)), "never"),
    "connection resets": (Faults(reset_rate=0.3), nothing, "never"),
    "garbage answers": (Faults(garbage_rate=0.3), nothing, "never"),
    "10 MB answers": (Faults(huge_rate=0.3), nothing, "never"),
    "answers that never end": (Faults(endless_rate=0.3), nothing, "never"),
    "401 mid-campaign, then a new token": (Faults(), revoke_then_swap, "never"),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS (Linux clear_refs); return it (KiB).

    ru_maxrss only ever grows, so after an earlier large test it would hide this one's growth.
    """
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status_kib("VmRSS")


def peak_rss() -> int:
    """This process's peak RSS (KiB) since the last reset_peak_rss()."""
    return _status_kib("VmHWM")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.slow
def test_campaign_survives(tmp_path: Path, name: str) -> None:
    faults, act, repeats = SCENARIOS[name]
    (tmp_path / "people.csv").write_text(
        "app_user_id\n" + "".join(f"p{i:04d}\n" for i in range(USERS)))
    at = soon()
    body = f"""
    audiences:
      people: {{file: people.csv}}
    schedules:
      - {{id: campaign, event_type: "r:t", at: "{at}", audience: people}}
    """
    rss_before = reset_peak_rss()

    async def scenario() -> Sink:
        sink = Sink(secret=SECRET, faults=faults)
        await sink.start()
        try:
            async with running(tmp_path, body, delivery=DELIVERY, sink=sink,
                               request_timeout="1s") as run:
                await act(run)
                await run.until(lambda: sum(1 for r in run.rows()
                                            if r.status == "delivered") == USERS, within=120)
        finally:
            await sink.stop()
        return sink

    sink = asyncio.run(scenario())
    report = check(f"sqlite:///{tmp_path / 'eventcron.db'}",
                   [("campaign", f"p{i:04d}") for i in range(USERS)],
                   [(r.idempotency_key, r.status, r.app_user_id) for r in sink.records],
                   repeats=repeats)
    grown_mb = (peak_rss() - rss_before) / 1024
    print(f"\n{name}: {report.line()}; peak RSS grew {grown_mb:.0f} MB")
    assert report.delivered == USERS
    # The fault really happened: attempts were spent on it, or (401) the endpoint paused.
    attempts = sum(r.attempts for r in rows_of(f"sqlite:///{tmp_path / 'eventcron.db'}"))
    if name.startswith("401"):
        assert sink.count(401) >= 1
    elif name not in ("10 MB answers", "answers that never end"):  # those answer 200
        assert attempts > USERS
    assert grown_mb < 150  # ten-megabyte answers are not held in memory
