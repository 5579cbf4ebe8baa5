"""`validate`, `next` and `schema` as a user runs them."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, Run


def assert_no_traceback(*outputs: str) -> None:
    for out in outputs:
        assert "Traceback" not in out


def test_validate_accepts_the_example(run: Run, tmp_path: Path) -> None:
    shutil.copy(ROOT / "schedules.example.yaml", tmp_path)
    shutil.copy(ROOT / "customers.example.csv", tmp_path)
    shutil.copy(ROOT / "optouts.example.csv", tmp_path)
    result = run("validate", "schedules.example.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "schedules.example.yaml: valid: 4 schedules (4 enabled), 4 audiences (9 users).")


def test_validate_reports_every_mistake_and_exits_1(run: Run) -> None:
    result = run("validate", str(ROOT / "tests/fixtures/dozen-mistakes.yaml"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("dozen-mistakes.yaml is not valid: 21 problems.")
    located = [line for line in lines[:-1] if line.split(":")[1].isdigit()]
    assert len(located) == 21
    assert_no_traceback(result.stdout, result.stderr)


@pytest.mark.slow
def test_validate_uses_the_config_option_and_environment(run: Run, tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("version: 1\nschedules: []\n")
    assert run("--config", "other.yaml", "validate").returncode == 0
    assert run("validate", "--config", "other.yaml").returncode == 0
    assert run("validate", env={"EVENTCRON_CONFIG": "other.yaml"}).returncode == 0
    missing = run("validate")
    assert missing.returncode == 1
    assert "there is no schedule file at schedules.yaml; pass --config FILE" in missing.stderr


@pytest.mark.parametrize("content", [
    b"\x00\x01\x02binary",
    b"a: \xff\xfe",
    b"x: " + b"[" * 20000 + b"]" * 20000,
    random.Random(5).randbytes(200_000),
])
def test_validate_survives_hostile_files(run: Run, tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.yaml").write_bytes(content)
    result = run("validate", "bad.yaml", timeout=20)
    assert result.returncode == 1
    assert result.stderr.startswith("bad.yaml:")
    assert_no_traceback(result.stdout, result.stderr)


def test_next_cron_in_berlin_prints_local_and_utc(run: Run) -> None:
    result = run("next", "--cron", "0 9 * * 1-5", "--timezone", "Europe/Berlin", "--count", "3",
                 "--after", "2026-11-26T12:00:00Z")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "  Fri 2026-11-27 09:00:00 CET (+0100)  2026-11-27T08:00:00Z",
        "  Mon 2026-11-30 09:00:00 CET (+0100)  2026-11-30T08:00:00Z",
        "  Tue 2026-12-01 09:00:00 CET (+0100)  2026-12-01T08:00:00Z",
    ]


def test_next_json_has_the_documented_shape(run: Run) -> None:
    result = run("next", "--cron", "0 9 * * 1-5", "--timezone", "Europe/Berlin", "--count", "3",
                 "--after", "2026-11-26T12:00:00Z", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"schedule": None, "utc": "2026-11-27T08:00:00Z", "local": "2026-11-27T09:00:00+01:00",
         "timezone": "Europe/Berlin"},
        {"schedule": None, "utc": "2026-11-30T08:00:00Z", "local": "2026-11-30T09:00:00+01:00",
         "timezone": "Europe/Berlin"},
        {"schedule": None, "utc": "2026-12-01T08:00:00Z", "local": "2026-12-01T09:00:00+01:00",
         "timezone": "Europe/Berlin"},
    ]


def test_next_defaults_to_now(run: Run) -> None:
    before = datetime.now(UTC)
    result = run("next", "--cron", "* * * * *", "--count", "1", "--json")
    first = datetime.fromisoformat(json.loads(result.stdout)[0]["utc"])
    assert before < first
    assert first.second == 0
    # The command reads the clock a moment after `before`: a minute boundary may pass.
    assert (first - before).total_seconds() <= 120


@pytest.mark.slow
def test_next_for_the_files_schedules_and_one_user(run: Run, tmp_path: Path) -> None:
    shutil.copy(ROOT / "schedules.example.yaml", tmp_path / "schedules.yaml")
    shutil.copy(ROOT / "customers.example.csv", tmp_path)
    shutil.copy(ROOT / "optouts.example.csv", tmp_path)
    result = run("next", "--count", "2", "--after", "2026-12-01T00:00:00Z", "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    by_schedule: dict[str, list[str]] = {}
    for item in items:
        by_schedule.setdefault(item["schedule"], []).append(item["utc"])
    assert by_schedule["weekday-checkin"] == ["2026-12-01T08:00:00Z", "2026-12-02T08:00:00Z"]
    assert by_schedule["heartbeat"] == ["2026-12-01T00:15:00Z", "2026-12-01T00:30:00Z"]
    assert by_schedule["appointment-followup"] == ["2026-12-24T09:00:00Z"]
    # customer-renewal fires in four zones: --count applies per schedule, earliest first.
    assert by_schedule["customer-renewal"] == ["2026-12-01T01:30:00Z", "2026-12-01T09:30:00Z"]
    renewal = [(i["timezone"], i["local"]) for i in items if i["schedule"] == "customer-renewal"]
    assert renewal == [("Asia/Tokyo", "2026-12-01T10:30:00+09:00"),
                       ("Europe/Berlin", "2026-12-01T10:30:00+01:00")]

    # u_1001 has no zone of their own: 09:00 Berlin, outside the quiet hours, plus jitter.
    user = run("next", "--user", "u_1001", "--count", "1", "--after", "2026-12-01T00:00:00Z",
               "--json")
    assert user.returncode == 0, user.stderr
    (item,) = json.loads(user.stdout)
    assert item["schedule"] == "weekday-checkin"
    assert item["app_user_id"] == "u_1001"
    sent = datetime.fromisoformat(item["send_at"])
    nominal = datetime.fromisoformat(item["utc"])
    assert 0 <= (sent - nominal).total_seconds() < 120  # jitter: 2m
    # u_1003 lives in New York: 09:00 Berlin is 03:00 there, inside 21:00-08:00, so the
    # event waits for 08:00 New York (13:00Z), jitter or not.
    held = run("next", "--user", "u_1003", "--count", "1", "--after", "2026-12-01T00:00:00Z",
               "--json")
    assert held.returncode == 0, held.stderr
    (item,) = json.loads(held.stdout)
    assert item["utc"] == "2026-12-01T08:00:00Z"
    assert item["send_at"] == "2026-12-01T13:00:00Z"


@pytest.mark.slow
def test_next_explains_unknown_schedule_and_user(run: Run, tmp_path: Path) -> None:
    shutil.copy(ROOT / "schedules.example.yaml", tmp_path / "schedules.yaml")
    shutil.copy(ROOT / "customers.example.csv", tmp_path)
    shutil.copy(ROOT / "optouts.example.csv", tmp_path)
    result = run("next", "--schedule", "nope")
    assert result.returncode == 1
    assert "no schedule 'nope'" in result.stderr
    result = run("next", "--user", "ghost")
    assert result.returncode == 1
    assert "no enabled schedule" in result.stderr and "'ghost'" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["next", "--cron", "61 * * * *"], "minute 61 is out of range"),
    (["next", "--cron", "@reboot"], "@reboot is not supported"),
    (["next", "--cron", "* * * * *", "--timezone", "Mars/Olympus"], "unknown time zone"),
])
def test_next_rejects_bad_input_with_exit_1(run: Run, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert_no_traceback(result.stdout, result.stderr)


@pytest.mark.parametrize(("args", "message"), [
    (["next", "--count", "zero"], "is not a whole number"),
    (["next", "--after", "yesterday"], "is not an RFC 3339 time"),
    (["next", "--after", "2026-01-01T00:00:00"], "has no UTC offset"),
    (["frobnicate"], "invalid choice"),
    (["next", "--cron", "* * * * *", "--user", "x"], "--cron cannot be combined"),
    ([], None),
])
def test_usage_errors_print_usage_and_exit_2(run: Run, args: list[str],
                                             message: str | None) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: eventcron" in result.stderr
    if message:
        assert message in result.stderr
    assert_no_traceback(result.stdout, result.stderr)


def test_schema_prints_the_json_schema_the_example_points_at(run: Run) -> None:
    result = run("schema")
    assert result.returncode == 0
    printed = json.loads(result.stdout)
    assert printed == json.loads((ROOT / "schedules.schema.json").read_text())
    first_line = (ROOT / "schedules.example.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=./schedules.schema.json"


@pytest.mark.slow
def test_version_and_help(run: Run) -> None:
    assert run("--version").stdout.startswith("eventcron ")
    help_text = run("--help").stdout
    for command in ("validate", "next", "schema"):
        assert command in help_text
