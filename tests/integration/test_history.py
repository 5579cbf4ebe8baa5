"""`eventcron history` and `status` against a real running daemon, its sink and its ledger.

The daemon runs in-process (tests/integration/harness.py) and fires an occurrence itself;
the commands run as processes with only ``--database``, beside an invalid schedule file or
none, on an SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.clock import rfc3339, to_ms
from eventcron.ledger import PASSED_BEFORE_LOAD, Filters
from tests.acceptance.conftest import eventcron_command
from tests.integration.harness import Running, running, soon, with_a_later_time_until_in_time

INVALID = "version: 1\nschedules:\n  - {id: alpha, cron: '61 9 * * *', users: [u1]}\n"


def eventcron(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
    return subprocess.run([eventcron_command(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def seconds_after(run: Running, schedule: str, nominal: datetime) -> list[float]:
    """Seconds from the nominal time to each delivery of a schedule, from the ledger."""
    return sorted((r.delivered_at - to_ms(nominal)) / 1000
                  for r in run.rows(Filters(schedule=(schedule,))) if r.delivered_at)


@pytest.mark.slow
def test_history_and_status_show_what_a_running_daemon_did(tmp_path: Path,
                                                           database_line: str) -> None:
    database = database_line
    passed = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
    elsewhere = tmp_path / "elsewhere"  # no schedule file at all
    invalid = tmp_path / "invalid"
    for folder in (elsewhere, invalid):
        folder.mkdir()
    (invalid / "schedules.yaml").write_text(INVALID)

    async def scenario(folder: Path, ahead: float) -> bool:
        at = soon(ahead)
        body = f"""
        {database}
        schedules:
          - {{id: launch, event_type: "a:b", at: "{at}", users: [u1, u2, u3]}}
          - {{id: missed, event_type: "a:b", at: "{rfc3339(passed)}", timezone: Asia/Tokyo,
             users: [u1]}}
        """
        nominal = datetime.fromisoformat(at)
        async with running(folder, body, fire_due=False) as run:
            await run.until(lambda: run.passed_before_load("launch")
                            or sum(1 for r in run.rows() if r.delivered_at) == 3, within=60)
            if run.passed_before_load("launch"):
                return False  # loaded after its time (a busy machine): again, later
            url = run.db_url
            shown = {cwd.name: await asyncio.to_thread(
                eventcron, cwd, "--database", url, "history", "--json")
                for cwd in (elsewhere, invalid)}
            text = await asyncio.to_thread(eventcron, elsewhere, "--database", url, "history")
            status = await asyncio.to_thread(eventcron, invalid, "--database", url, "status",
                                             "--json")
            status_text = await asyncio.to_thread(eventcron, folder, "status")
            status_file = await asyncio.to_thread(eventcron, folder, "status", "--json")
            lost = await asyncio.to_thread(eventcron, invalid, "history")
            delays = seconds_after(run, "launch", nominal)
            owner = run.daemon.owner
        for result in (*shown.values(), text, status, status_text, status_file):
            assert result.returncode == 0, result.stderr
        assert shown["elsewhere"].stdout == shown["invalid"].stdout
        launch, missed = json.loads(shown["elsewhere"].stdout)
        assert launch == {
            "schedule": "launch", "occurrence": rfc3339(nominal), "timezone": "UTC",
            "local": nominal.isoformat(timespec="seconds").replace("Z", "+00:00"),
            "outcome": "fired", "reason": None, "instance": owner, "rows": 3,
            "counts": {"pending": 0, "delivered": 3, "failed": 0, "expired": 0,
                       "cancelled": 0, "suppressed": 0},
            "first_delivery_s": delays[0], "last_delivery_s": delays[-1]}
        assert 0 <= delays[0] <= delays[-1] < 60
        assert (missed["schedule"], missed["outcome"], missed["reason"], missed["instance"],
                missed["rows"]) == ("missed", "skipped", PASSED_BEFORE_LOAD, owner, 0)
        assert missed["local"].endswith("+09:00") and missed["timezone"] == "Asia/Tokyo"

        me = f"{socket.gethostname()} pid {os.getpid()}"  # the daemon runs in this process
        header, first, second = text.stdout.splitlines()
        assert header.startswith("LOCAL TIME")
        assert "launch@UTC" in first and " fired " in first and me in first
        assert first.endswith("3 delivered")
        assert "missed@Asia/Tokyo" in second and second.endswith(PASSED_BEFORE_LOAD)

        # From the ledger alone (beside an invalid file) and with the daemon's own file.
        for state in (json.loads(status.stdout), json.loads(status_file.stdout)):
            (alive,) = [i for i in state["instances"] if i["alive"]]
            assert (alive["name"], alive["pid"], alive["paused"]) == (owner, os.getpid(),
                                                                      False)
            by_id = {s["id"]: s for s in state["schedules"]}
            assert by_id["launch"]["last_occurrence"] == launch
            assert by_id["missed"]["last_occurrence"] == missed
        assert status_text.stdout.startswith(f"running: 1 instance ({me}, up ")
        # Without --database, the invalid file cannot name the ledger: one sentence.
        assert lost.returncode == 1 and "--database" in lost.stderr
        assert "Traceback" not in lost.stderr
        return True

    with_a_later_time_until_in_time(tmp_path, scenario)
