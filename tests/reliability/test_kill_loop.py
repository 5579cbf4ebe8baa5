"""kill -9 at random points of a campaign, twenty times over, restarting in between."""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

import pytest

from tests.acceptance.processes import (
    Fired,
    Proc,
    at_time,
    fire,
    fire_when_due,
    is_ready,
    passed_before_load,
    rfc3339,
    start,
    start_sink,
    wait_for,
    write_config,
)
from tests.reliability.invariants import check, rows_of

USERS = 3000
KILLS = 20


def ready_or_gone(proc: Proc) -> bool:
    return is_ready(proc) or proc.popen.poll() is not None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_twenty_kills_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    # 100 ms answers, 16 in flight: the campaign takes longer than the twenty short lives,
    # so kills land before, during and after the fire, and in the middle of sending.
    sink = start_sink(tmp_path, "--latency", "100ms")
    at = at_time(3)
    (tmp_path / "people.csv").write_text(
        "app_user_id,plan\n" + "".join(f"k{i:05d},p{i % 3}\n" for i in range(USERS)))
    config = write_config(tmp_path, sink.url, f"""\
  - id: campaign
    event_type: "r:kill"
    at: "{rfc3339(at)}"
    audience: people
    data: {{plan: "${{user.plan}}"}}
""", audiences="  people: {file: people.csv}\n")
    config.write_text(config.read_text().replace("concurrency: 32", "concurrency: 16"))
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    errors: list[str] = []
    killed_at: list[int] = []
    fired: Fired | None = None
    try:
        for i in range(KILLS):
            if fired is None and passed_before_load(url, "campaign", at):
                # Between two lives: the first life that loaded the plan did so after the
                # occurrence's time (a loaded machine) and skipped it; send it as an operator
                # would. Otherwise the lives fire it, finish it and catch it up themselves.
                fired = fire(tmp_path, "campaign", at)
            proc = start(["run"], tmp_path, f"run{i:02d}")
            try:
                if rng.random() < 0.25:
                    time.sleep(rng.uniform(0.0, 1.0))  # during start-up, most likely
                else:
                    # Wherever it has got to once ready: catching up, firing or sending.
                    wait_for(functools.partial(ready_or_gone, proc), 120,
                             f"start {i} to be ready")
                    time.sleep(rng.uniform(0.1, 2.0))
            finally:
                proc.kill9()
            killed_at.append(len(sink.delivered()))
            errors.append(proc.stderr())
        if fired is None:
            fired = fire_when_due(tmp_path, "campaign", at)  # fires only after such a skip
        final = start(["run"], tmp_path, "final")
        wait_for(lambda: is_ready(final), 120, "the last start")
        wait_for(lambda: len({r["app_user_id"] for r in sink.delivered()}) == USERS, 300,
                 "every user delivered")
        wait_for(lambda: all(r.status == "delivered" for r in rows_of(url)), 60,
                 "the ledger to record every delivery")
        code = final.stop()
        errors.append(final.stderr())
    finally:
        sink.proc.stop()  # a daemon left running is killed by tests/conftest.py
    assert code == 0
    assert not [e for e in errors if "Traceback" in e]
    report = check(url, [("campaign", f"k{i:05d}") for i in range(USERS)],
                   [(r["idempotency_key"], r["status"], r["app_user_id"])
                    for r in sink.records()], repeats="after_kill")
    print(f"\n{KILLS} kills (deliveries seen at each: {killed_at}); {report.line()};"
          f" rows lost: 0; eventcron fire added {fired.new} rows")
    assert report.delivered == USERS
    assert sum(1 for n in killed_at if 0 < n < USERS) >= 3  # some kills hit mid-campaign
