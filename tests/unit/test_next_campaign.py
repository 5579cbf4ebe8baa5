"""`next` and `validate` under the campaign rules: what a preview says the daemon will do.

The commands run in-process through ``main()`` on real schedule files; ``--after`` makes
time an input.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from eventcron.cli import main
from eventcron.timing.holidays import holiday
from tests.unit.fakes import write_config

AFTER = "2026-12-01T00:00:00Z"
QUIET = 'quiet_hours: {from: "21:00", to: "08:00"}'


def next_json(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> Any:
    assert main(["--config", str(config), "next", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def next_text(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> list[str]:
    assert main(["--config", str(config), "next", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def holiday_reason(region: str, day: str) -> str:
    name = holiday(region, date.fromisoformat(day))
    assert name is not None, f"{day} is no holiday in {region}"
    return f"holiday: {name} ({region})"


# --- quiet hours ----------------------------------------------------------------------------


def test_quiet_hours_crossing_midnight_hold_each_users_event_until_their_morning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, """
        - id: evening
          event_type: "e:evening"
          cron: "30 22 * * *"
          timezone: user
          users: [{id: b1, timezone: Europe/Berlin}, {id: n1, timezone: America/New_York}]
        """, delivery=f"expires_after: 12h\n{QUIET}")
    (berlin, _) = next_json(capsys, cfg.path, "--user", "b1", "--count", "2", "--after", AFTER)
    assert berlin == {
        "schedule": "evening", "utc": "2026-12-01T21:30:00Z",
        "local": "2026-12-01T22:30:00+01:00", "timezone": "Europe/Berlin",
        "skipped": None, "app_user_id": "b1",
        "send_at": "2026-12-02T07:00:00Z",  # 08:00 in Berlin, the window's end
        "expired": None}
    (new_york, _) = next_json(capsys, cfg.path, "--user", "n1", "--count", "2",
                              "--after", AFTER)
    assert (new_york["utc"], new_york["send_at"], new_york["timezone"]) == (
        "2026-12-01T03:30:00Z", "2026-12-01T13:00:00Z", "America/New_York")
    lines = next_text(capsys, cfg.path, "--user", "b1", "--count", "1", "--after", AFTER)
    assert lines[1].endswith("held by quiet hours until 08:00 CET the next day"), lines


def test_the_zone_shown_for_a_user_is_their_own_where_the_rules_decide(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, """
        - id: morning
          event_type: "e:morning"
          cron: "0 9 * * *"
          timezone: Europe/Berlin
          users: [{id: n1, timezone: America/New_York}]
        """, delivery=f"expires_after: 12h\n{QUIET}")
    (item,) = next_json(capsys, cfg.path, "--user", "n1", "--count", "1", "--after", AFTER)
    # 09:00 in Berlin is 03:00 in New York: inside the user's night, held to 08:00 there.
    assert (item["utc"], item["timezone"], item["local"], item["send_at"]) == (
        "2026-12-01T08:00:00Z", "America/New_York", "2026-12-01T03:00:00-05:00",
        "2026-12-01T13:00:00Z")
    lines = next_text(capsys, cfg.path, "--user", "n1", "--count", "1", "--after", AFTER)
    assert lines[0] == "morning (America/New_York)"
    assert lines[1].endswith("held by quiet hours until 08:00 EST"), lines


def test_a_hold_past_the_expiry_shows_the_event_expiring(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, """
        - {id: late, event_type: "e:late", cron: "30 22 * * *", timezone: Europe/Berlin,
           users: [u1]}
        """, delivery=f"expires_after: 6h\n{QUIET}")
    (item,) = next_json(capsys, cfg.path, "--user", "u1", "--count", "1", "--after", AFTER)
    assert item["skipped"] is None
    assert item["expired"] is not None
    assert "quiet hours 21:00-08:00 (Europe/Berlin)" in item["expired"]
    lines = next_text(capsys, cfg.path, "--user", "u1", "--count", "1", "--after", AFTER)
    assert "  expired: quiet hours 21:00-08:00 (Europe/Berlin)" in lines[1]


def test_validate_warns_of_a_quiet_window_longer_than_the_expiry_and_still_passes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, """
        - {id: late, event_type: "e:late", cron: "30 22 * * *", users: [u1]}
        """, delivery=f"expires_after: 6h\n{QUIET}")
    assert main(["validate", str(cfg.path)]) == 0
    shown = capsys.readouterr()
    assert ": valid: 1 schedule" in shown.out
    assert "warning:" in shown.err and "21:00-08:00" in shown.err, shown.err
    fine = write_config(tmp_path, """
        - {id: late, event_type: "e:late", cron: "30 22 * * *", users: [u1]}
        """, delivery=f"expires_after: 12h\n{QUIET}", name="fine.yaml")
    assert main(["validate", str(fine.path)]) == 0
    assert capsys.readouterr().err == ""


# --- skip dates, holidays and opt-outs ------------------------------------------------------


SKIPPING = """
    - id: daily
      event_type: "e:daily"
      cron: "0 9 * * *"
      timezone: Europe/Berlin
      skip: {dates: [2026-12-24], holidays: DE}
      users: [u1, u2]
    """


def test_occurrences_skipped_for_everyone_are_left_out_and_count_still_counts_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, SKIPPING)
    after = "2026-12-23T12:00:00Z"
    shown = next_json(capsys, cfg.path, "--count", "3", "--after", after)
    assert [(i["utc"], i["skipped"]) for i in shown] == [
        ("2026-12-27T08:00:00Z", None), ("2026-12-28T08:00:00Z", None),
        ("2026-12-29T08:00:00Z", None)]
    listed = next_json(capsys, cfg.path, "--count", "4", "--all", "--after", after)
    assert [(i["utc"], i["skipped"]) for i in listed] == [
        ("2026-12-24T08:00:00Z", "skip date 2026-12-24"),
        ("2026-12-25T08:00:00Z", holiday_reason("DE", "2026-12-25")),
        ("2026-12-26T08:00:00Z", holiday_reason("DE", "2026-12-26")),
        ("2026-12-27T08:00:00Z", None)]
    lines = next_text(capsys, cfg.path, "--count", "2", "--all", "--after", after)
    assert lines[0] == "daily (Europe/Berlin)"
    assert lines[1].endswith("  skipped: skip date 2026-12-24"), lines
    assert lines[2].endswith(f"  skipped: {holiday_reason('DE', '2026-12-25')}"), lines
    plain = next_text(capsys, cfg.path, "--count", "1", "--after", after)
    assert len(plain) == 2 and "skipped" not in plain[1] and "2026-12-27" in plain[1]


def test_a_user_sees_every_occurrence_with_the_ones_they_skip(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, SKIPPING)
    items = next_json(capsys, cfg.path, "--user", "u1", "--count", "4",
                      "--after", "2026-12-23T12:00:00Z")
    assert [(i["utc"], i["skipped"], i["send_at"]) for i in items] == [
        ("2026-12-24T08:00:00Z", "skip date 2026-12-24", "2026-12-24T08:00:00Z"),
        ("2026-12-25T08:00:00Z", holiday_reason("DE", "2026-12-25"), "2026-12-25T08:00:00Z"),
        ("2026-12-26T08:00:00Z", holiday_reason("DE", "2026-12-26"), "2026-12-26T08:00:00Z"),
        ("2026-12-27T08:00:00Z", None, "2026-12-27T08:00:00Z")]


def test_holidays_from_a_user_column_skip_only_the_users_of_that_region(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, """
        - id: daily
          event_type: "e:daily"
          cron: "0 9 * * *"
          timezone: Europe/Berlin
          skip: {holidays: user.country}
          users: [{id: de1, country: DE}, {id: us1, country: US}]
        """)
    after = "2026-10-02T12:00:00Z"  # the next occurrence: 3 October, German Unity Day
    (german,) = next_json(capsys, cfg.path, "--user", "de1", "--count", "1", "--after", after)
    assert (german["utc"], german["skipped"]) == (
        "2026-10-03T07:00:00Z", holiday_reason("DE", "2026-10-03"))
    (american,) = next_json(capsys, cfg.path, "--user", "us1", "--count", "1",
                            "--after", after)
    assert (american["utc"], american["skipped"]) == ("2026-10-03T07:00:00Z", None)
    # Not skipped for everyone: the occurrence fires, and the German user's row says why.
    (occurrence,) = next_json(capsys, cfg.path, "--count", "1", "--after", after)
    assert (occurrence["utc"], occurrence["skipped"]) == ("2026-10-03T07:00:00Z", None)


def test_an_opted_out_user_skips_every_occurrence_and_the_others_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "optouts.csv").write_text("app_user_id,when\nu2,2026-11-30\n")
    cfg = write_config(tmp_path, """
        - {id: daily, event_type: "e:daily", cron: "0 9 * * *", users: [u1, u2]}
        """, extra="suppress:\n  file: optouts.csv\n")
    out = next_json(capsys, cfg.path, "--user", "u2", "--count", "2", "--after", AFTER)
    assert [(i["utc"], i["skipped"]) for i in out] == [
        ("2026-12-01T09:00:00Z", "opted out"), ("2026-12-02T09:00:00Z", "opted out")]
    sent = next_json(capsys, cfg.path, "--user", "u1", "--count", "2", "--after", AFTER)
    assert [i["skipped"] for i in sent] == [None, None]
    lines = next_text(capsys, cfg.path, "--user", "u2", "--count", "1", "--after", AFTER)
    assert lines[1].endswith("  skipped: opted out"), lines
    assert [i["skipped"] for i in next_json(capsys, cfg.path, "--after", AFTER)] == [None] * 5


def test_all_goes_with_the_files_schedules_not_a_bare_cron(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "--cron", "0 9 * * *", "--all"]) == 2
    assert "--cron cannot be combined with --schedule, --user or --all" in (
        capsys.readouterr().err)
