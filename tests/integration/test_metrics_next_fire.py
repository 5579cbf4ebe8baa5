"""`eventcron_next_fire_timestamp_seconds` over the real /metrics endpoint of a daemon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Running, running, write_schedule

NEXT_FIRE = "eventcron_next_fire_timestamp_seconds"

# 09:00 on New Year's Day: a different instant in each zone (the scheduler lists its jobs
# soonest first, so the zone set last is the latest), and none during a test's run.
ZONES = ("Pacific/Kiritimati", "Asia/Tokyo", "Europe/Berlin", "America/New_York",
         "Pacific/Pago_Pago")
USER_ZONES = """
  - id: by-zone
    event_type: "reminder:checkin"
    cron: "0 9 1 1 *"
    timezone: user
    users: [{users}]
""".format(users=", ".join(f"{{id: u_{i}, timezone: {z}}}" for i, z in enumerate(ZONES)))


async def next_fires(run: Running) -> dict[str, float]:
    """Scrape /metrics and return the next-fire series, by schedule."""
    server = run.daemon.metrics_server
    assert server is not None
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{server.port}/metrics")).text
    return {sample.labels["schedule"]: sample.value
            for family in text_string_to_metric_families(text) if family.name == NEXT_FIRE
            for sample in family.samples}


async def scrape_until(run: Running, holds: Callable[[dict[str, float]], bool],
                       within: float = 15.0) -> dict[str, float]:
    """Scrape until ``holds(series)``; fail showing the last scrape if it never does."""
    deadline = time.monotonic() + within
    while True:
        series = await next_fires(run)
        if holds(series):
            return series
        if time.monotonic() > deadline:
            raise AssertionError(f"never held; /metrics shows {series}")
        await asyncio.sleep(0.05)


def test_the_soonest_zone_is_shown_and_removed_schedules_vanish(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = "schedules:\n" + USER_ZONES + """
  - {id: gone, event_type: "a:b", every: 1h, users: [u_9]}
"""
        async with running(tmp_path, body, metrics_listen=("127.0.0.1", 0),
                           observe_interval=0.1) as run:
            clockwork = run.daemon.firing.clockwork
            per_zone = [t.timestamp() for z in ZONES
                        if (t := clockwork.next_fire(f"by-zone@{z}")) is not None]
            assert len(per_zone) == len(ZONES)
            assert min(per_zone) < max(per_zone)  # or the test could not tell
            series = await scrape_until(run, lambda s: "by-zone" in s and "gone" in s)
            assert series["by-zone"] == min(per_zone)

            write_schedule(tmp_path, run.sink.url, "schedules:\n" + USER_ZONES)
            run.daemon.request_reload()
            series = await scrape_until(run, lambda s: "gone" not in s)
            assert series == {"by-zone": min(per_zone)}

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_one_off_that_fired_has_no_next_fire(tmp_path: Path) -> None:
    async def scenario() -> None:
        body = """
        schedules:
          - {id: later, event_type: "a:b", every: 1h, users: [u_9]}
        """
        async with running(tmp_path, body, metrics_listen=("127.0.0.1", 0),
                           observe_interval=0.1) as run:
            # Added by a reload once the daemon runs, far enough ahead that the series is seen
            # before the one-off is handed off (2 s early): the lead doubles while a loaded
            # machine makes the reload and the first scrape come later than that.
            lead = 4
            while True:
                at = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
                write_schedule(tmp_path, run.sink.url, body + f"""
          - {{id: once, event_type: "a:once", at: "{at:%Y-%m-%dT%H:%M:%S}", users: [u_1]}}
        """)
                assert await run.daemon.reload("test")
                try:
                    series = await scrape_until(run, lambda s: "once" in s, within=lead)
                except AssertionError:
                    series = {}
                if series and datetime.now(UTC) < at - timedelta(seconds=2):
                    break
                lead *= 2
            assert series["once"] == at.timestamp()
            await run.until(lambda: any(r.event_type == "a:once"
                                        for r in run.sink.delivered()))
            series = await scrape_until(run, lambda s: "once" not in s)
            assert "later" in series

    asyncio.run(scenario())
