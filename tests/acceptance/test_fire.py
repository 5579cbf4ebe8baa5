"""`eventcron fire`, `validate` and `next` at the edges a user steps on, as processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron.ledger import PASSED_BEFORE_LOAD, Ledger
from tests.acceptance.conftest import Run
from tests.acceptance.processes import (
    is_ready,
    rfc3339,
    start,
    start_sink,
    wait_for,
    write_config,
)


def passed(seconds: float) -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(microsecond=0)


@pytest.mark.slow
def test_fire_sends_what_passed_before_the_load_once(run: Run, tmp_path: Path) -> None:
    sink = start_sink(tmp_path)
    t = passed(20)
    write_config(tmp_path, sink.url, f"""\
  - {{id: launch, event_type: "a:b", at: "{rfc3339(t)}", users: [u_1, u_2, u_3]}}
""")
    daemon = start(["run"], tmp_path, "daemon")
    wait_for(lambda: is_ready(daemon), 60, "the daemon to be ready")
    assert f"fire launch --occurrence {rfc3339(t)}" in daemon.stderr()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}", create=False)
    try:
        assert [(r.status, r.reason) for r in ledger.fires_of("launch")] == [
            ("skipped", PASSED_BEFORE_LOAD)]
    finally:
        ledger.close()

    dry = run("fire", "launch", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would add 3 new rows; 0 rows present." in dry.stdout
    assert "Dry run: nothing was written." in dry.stdout

    # No token in this environment: firing needs only the file and the ledger.
    first = run("fire", "launch")
    assert first.returncode == 0, first.stderr
    assert f"launch at {rfc3339(t)}" in first.stdout
    assert "added 3 new rows; 0 rows already existed." in first.stdout
    assert "A running instance will send them" in first.stdout
    wait_for(lambda: len(sink.delivered()) == 3, 60, "three deliveries")

    again = run("fire", "launch", "--occurrence", rfc3339(t))
    assert again.returncode == 0, again.stderr
    assert "added 0 new rows; 3 rows already existed." in again.stdout
    daemon.stop()
    assert len(sink.records()) == 3  # the second fire added nothing to send

    stopped = run("fire", "launch")
    assert "\nnot running: last seen " in stopped.stdout  # as `status` opens
    assert "(stopped)\nNo instance is running: the rows wait pending until one starts." \
        in stopped.stdout


@pytest.mark.slow
def test_fire_refuses_what_is_not_an_occurrence_or_not_a_schedule(run: Run,
                                                                  tmp_path: Path) -> None:
    write_config(tmp_path, "http://127.0.0.1:9/api/v1/webhook/event", """\
  - {id: daily, event_type: "a:b", cron: "0 9 * * *", users: [u_1]}
  - {id: off, event_type: "a:b", cron: "0 9 * * *", users: [u_1], enabled: false}
""")
    start_ledger = Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}")
    start_ledger.close()
    result = run("fire", "daily", "--occurrence", "2026-12-01T09:30:00Z")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "eventcron: 2026-12-01T09:30:00Z is not an occurrence of schedule 'daily'; the nearest"
        " are 2026-12-01T09:00:00Z and 2026-12-02T09:00:00Z.")
    result = run("fire", "dialy")
    assert result.returncode == 1
    assert "no schedule 'dialy'" in result.stderr and "did you mean 'daily'" in result.stderr
    result = run("fire", "off")
    assert result.returncode == 1 and "is disabled" in result.stderr
    future = run("fire", "daily", "--occurrence", "2099-01-01T09:00:00Z")
    assert future.returncode == 1
    assert "2099-01-01T09:00:00Z is still to come; the schedule fires it by itself" in (
        future.stderr)
    expired = run("fire", "daily", "--occurrence", "2026-01-01T09:00:00Z")
    assert expired.returncode == 1
    assert ("the occurrence at 2026-01-01T09:00:00Z expired at 2026-01-01T15:00:00Z"
            " (delivery.expires_after, 6h): its events would never be sent.") in expired.stderr
    result = run("fire", "daily", "--occurrence", "yesterday")
    assert result.returncode == 2 and "not an RFC 3339 time" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_validate_and_next_warn_about_schedules_that_will_never_fire(run: Run,
                                                                     tmp_path: Path) -> None:
    write_config(tmp_path, "http://127.0.0.1:9/api/v1/webhook/event", f"""\
  - {{id: gone, event_type: "a:b", at: "{rfc3339(passed(60))}", users: [u_1, u_2]}}
  - {{id: fine, event_type: "a:b", cron: "0 9 * * *", users: [u_3]}}
""")
    result = run("validate")
    assert result.returncode == 0
    assert "2 schedules (2 enabled), 2 audiences (3 users)." in result.stdout
    assert "warning: schedule 'gone'" in result.stderr
    assert "it will never fire." in result.stderr
    result = run("next", "--json")
    assert result.returncode == 0
    assert {f["schedule"] for f in json.loads(result.stdout)} == {"fine"}
    assert "warning: schedule 'gone'" in result.stderr


def test_validate_refuses_a_user_listed_twice_in_a_csv(run: Run, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\n"
                                        "u_1,UTC\n")
    write_config(tmp_path, "http://127.0.0.1:9/api/v1/webhook/event", """\
  - {id: s, event_type: "a:b", cron: "0 9 * * *", timezone: user, audience: people}
""", audiences="  people: {file: users.csv}\n")
    result = run("validate")
    assert result.returncode == 1
    assert "users.csv:4: the user 'u_1' is listed twice (first at users.csv:2)." in (
        result.stderr.splitlines())
