"""`next` previews the campaign rules as a user runs it: quiet hours, holidays, opt-outs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.conftest import Run

SCHEDULES = """\
version: 1
endpoint:
  url: http://127.0.0.1:9/events
  token: {file: token}
delivery:
  expires_after: 12h
  quiet_hours: {from: "21:00", to: "08:00"}
suppress:
  file: optouts.csv
audiences:
  customers: {file: customers.csv}
schedules:
  - id: evening
    event_type: "reminder:evening"
    cron: "30 22 * * *"
    timezone: user
    skip: {holidays: user.country}
    audience: customers
"""

CUSTOMERS = """\
app_user_id,timezone,country
berlin,Europe/Berlin,DE
tokyo,Asia/Tokyo,JP
gone,Europe/Berlin,DE
"""


def write_files(folder: Path) -> None:
    (folder / "schedules.yaml").write_text(SCHEDULES)
    (folder / "customers.csv").write_text(CUSTOMERS)
    (folder / "optouts.csv").write_text("app_user_id\ngone\n")


def test_next_for_a_user_shows_the_send_time_after_quiet_hours_and_the_skips(
        run: Run, tmp_path: Path) -> None:
    write_files(tmp_path)
    after = "2026-10-01T12:00:00Z"
    result = run("next", "--user", "berlin", "--count", "3", "--after", after, "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [(i["local"], i["send_at"], i["skipped"], i["expired"]) for i in items] == [
        # 22:30 falls in the night: sent at 08:00 the next morning, Berlin time.
        ("2026-10-01T22:30:00+02:00", "2026-10-02T06:00:00Z", None, None),
        ("2026-10-02T22:30:00+02:00", "2026-10-03T06:00:00Z", None, None),
        ("2026-10-03T22:30:00+02:00", "2026-10-04T06:00:00Z",
         "holiday: German Unity Day (DE)", None),
    ]
    assert {i["timezone"] for i in items} == {"Europe/Berlin"}

    tokyo = run("next", "--user", "tokyo", "--count", "3", "--after", after, "--json")
    assert [i["skipped"] for i in json.loads(tokyo.stdout)] == [None, None, None]

    gone = run("next", "--user", "gone", "--count", "2", "--after", after, "--json")
    assert [i["skipped"] for i in json.loads(gone.stdout)] == ["opted out", "opted out"]

    text = run("next", "--user", "berlin", "--count", "3", "--after", after)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[1:] == [
        "  Thu 2026-10-01 22:30:00 CEST (+0200)  2026-10-01T20:30:00Z"
        "  held by quiet hours until 08:00 CEST the next day",
        "  Fri 2026-10-02 22:30:00 CEST (+0200)  2026-10-02T20:30:00Z"
        "  held by quiet hours until 08:00 CEST the next day",
        "  Sat 2026-10-03 22:30:00 CEST (+0200)  2026-10-03T20:30:00Z"
        "  skipped: holiday: German Unity Day (DE)",
    ]


def test_validate_warns_when_quiet_hours_outlast_the_expiry(run: Run, tmp_path: Path) -> None:
    write_files(tmp_path)
    short = SCHEDULES.replace("expires_after: 12h", "expires_after: 6h")
    (tmp_path / "schedules.yaml").write_text(short)
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert "valid: 1 schedule" in result.stdout
    assert "warning:" in result.stderr and "expires_after" in result.stderr, result.stderr
