"""`status` opens with who is running, and `fire` says the same: real processes, kill -9.

A ledger no instance used, a running daemon, one paused by a 401, one stopped by SIGTERM,
and one killed with SIGKILL, as `status`, `status --json`, `fire` and `history` show them.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from eventcron.ledger import Ledger, instances
from tests.acceptance.conftest import Run
from tests.acceptance.processes import is_ready, rfc3339, start, start_sink, wait_for, write_config

HOST = socket.gethostname()
SILENT = 300_000  # ms: how long a killed instance is made to look silent (see below)


def status(run: Run) -> tuple[str, dict[str, Any]]:
    """Return `status`'s first line and `status --json`."""
    text, as_json = run("status"), run("status", "--json")
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    return text.stdout.splitlines()[0], json.loads(as_json.stdout)


def running_line(pid: int, sha256: str, *, paused: bool = False) -> re.Pattern[str]:
    pause = ", paused: token refused" if paused else ""
    return re.compile(rf"running: 1 instance \({re.escape(HOST)} pid {pid}, up \d+ (s|min),"
                      rf" last seen \d+ s ago, plan {sha256[:8]}…{pause}\)")


def first_line_matches(run: Run, pattern: re.Pattern[str]) -> bool:
    return pattern.fullmatch(status(run)[0]) is not None


@pytest.mark.slow
def test_status_tells_running_paused_stopped_and_crashed(run: Run, tmp_path: Path) -> None:
    # Every request is refused 401: the daemon pauses sending, as with a revoked token.
    sink = start_sink(tmp_path, "--fail-rate", "1", "--fail-status", "401")
    t = (datetime.now(UTC) - timedelta(seconds=20)).replace(microsecond=0)
    path = write_config(tmp_path, sink.url, f"""\
  - {{id: launch, event_type: "a:b", at: "{rfc3339(t)}", users: [u_1, u_2, u_3]}}
""")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    Ledger.open(url).close()  # a ledger no instance has used yet

    assert status(run)[0] == "not running: no instance has used this ledger yet"
    fired = run("fire", "launch")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.splitlines()[1:] == [
        "not running: no instance has used this ledger yet",
        "No instance is running: the rows wait pending until `eventcron run` starts."]
    (launch,) = json.loads(run("history", "--json").stdout)
    assert launch["outcome"] == "fired" and launch["counts"]["pending"] == 3
    assert launch["instance"].startswith("eventcron fire by ")
    assert launch["instance"].endswith(f" on {HOST} pid {launch['instance'].split()[-1]}")

    daemon = start(["run"], tmp_path, "daemon")
    wait_for(lambda: is_ready(daemon), 60, "the daemon to be ready")
    wait_for(lambda: first_line_matches(run, running_line(daemon.popen.pid, sha256)), 30,
             "status to say the daemon runs")
    # It sends the three rows, is refused, and pauses: its next heartbeat says so.
    wait_for(lambda: first_line_matches(run, running_line(daemon.popen.pid, sha256,
                                                          paused=True)), 30,
             "status to say sending is paused")
    (alive,) = [i for i in status(run)[1]["instances"] if i["alive"]]
    assert (alive["pid"], alive["host"], alive["paused"], alive["plan_sha256"]) == (
        daemon.popen.pid, HOST, True, sha256)
    assert alive["stopped_at"] is None

    assert daemon.stop() == 0
    line, state = status(run)
    assert re.fullmatch(rf"not running: last seen \d{{4}}-\d\d-\d\d \d\d:\d\d UTC,"
                        rf" {re.escape(HOST)} pid {daemon.popen.pid} \(stopped\)", line), line
    (gone,) = state["instances"]
    assert gone["alive"] is False and gone["stopped_at"] is not None
    again = run("fire", "launch", "--occurrence", rfc3339(t))
    assert again.stdout.splitlines()[1:] == [
        line, "No instance is running: the rows wait pending until one starts."]

    second = start(["run"], tmp_path, "second")
    wait_for(lambda: is_ready(second), 60, "the second daemon to be ready")
    wait_for(lambda: re.match(rf"running: 1 instance \({re.escape(HOST)} pid"
                              rf" {second.popen.pid}, ", status(run)[0]) is not None, 30,
             "status to show the second daemon alone")
    second.kill9()
    # Killed, it never says it stopped; it is judged crashed once its heartbeat is older
    # than ALIVE_WITHIN (30 s). Rather than wait that long, the heartbeat rows are aged by
    # five minutes, as if they had passed: both processes are gone (kill9 waited for it), so
    # nothing writes them again.
    ledger = Ledger.open(url, create=False)
    try:
        with ledger.engine.begin() as conn:
            conn.execute(update(instances).values(last_seen=instances.c.last_seen - SILENT))
    finally:
        ledger.close()
    line, state = status(run)
    assert re.fullmatch(rf"not running: last seen \d{{4}}-\d\d-\d\d \d\d:\d\d UTC,"
                        rf" {re.escape(HOST)} pid {second.popen.pid} \(no heartbeat for 5"
                        rf" min: crashed or cut off\)", line), line
    crashed = next(i for i in state["instances"] if i["pid"] == second.popen.pid)
    assert crashed["alive"] is False and crashed["stopped_at"] is None
