"""kill -9 at random points of a campaign, twenty times over, restarting in between."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.acceptance.processes import start, start_sink, wait_for, write_config
from tests.reliability.invariants import check, rows_of

USERS = 3000
KILLS = 20


@pytest.mark.timeout(600)
def test_twenty_kills_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    # 100 ms answers, 16 in flight: the campaign takes longer than the twenty short lives,
    # so kills land before, during and after the fire, and in the middle of sending.
    sink = start_sink(tmp_path, "--latency", "100ms")
    at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    (tmp_path / "people.csv").write_text(
        "app_user_id,plan\n" + "".join(f"k{i:05d},p{i % 3}\n" for i in range(USERS)))
    config = write_config(tmp_path, sink.url, f"""\
  - id: campaign
    event_type: "r:kill"
    at: "{at}"
    audience: people
    data: {{plan: "${{user.plan}}"}}
""", audiences="  people: {file: people.csv}\n")
    config.write_text(config.read_text().replace("concurrency: 32", "concurrency: 16"))
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    errors: list[str] = []
    killed_at: list[int] = []
    try:
        for i in range(KILLS):
            proc = start(["run"], tmp_path, f"run{i:02d}")
            time.sleep(rng.uniform(0.4, 3.0))  # start-up, firing or sending: anywhere
            proc.kill9()
            killed_at.append(len(sink.delivered()))
            errors.append(proc.stderr())
        final = start(["run"], tmp_path, "final")
        wait_for(lambda: "eventcron ready" in final.stderr(), 60, "the last start")
        wait_for(lambda: len({r["app_user_id"] for r in sink.delivered()}) == USERS, 180,
                 "every user delivered")
        wait_for(lambda: all(r.status == "delivered" for r in rows_of(url)), 60,
                 "the ledger to record every delivery")
        code = final.stop()
        errors.append(final.stderr())
    finally:
        sink.proc.stop()
    assert code == 0
    assert not [e for e in errors if "Traceback" in e]
    report = check(url, [("campaign", f"k{i:05d}") for i in range(USERS)],
                   [(r["idempotency_key"], r["status"], r["app_user_id"])
                    for r in sink.records()], repeats="after_kill")
    print(f"\n{KILLS} kills (deliveries seen at each: {killed_at}); {report.line()};"
          " rows lost: 0")
    assert report.delivered == USERS
    assert sum(1 for n in killed_at if 0 < n < USERS) >= 3  # some kills hit mid-campaign
