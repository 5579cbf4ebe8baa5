"""Audience ids: each listed once, taken exactly as written, resolved through one path."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventcron import config
from eventcron.firing import plan
from eventcron.problems import InvalidInput

HEAD = """\
version: 1
audiences:
  people: {file: users.csv}
schedules:
  - {id: s, event_type: "a:b", cron: "0 9 * * *", timezone: user, audience: people}
"""


def load_problems(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    return [str(p) for p in info.value.problems]


def folder_with(tmp_path: Path, csv_text: str, yaml_text: str = HEAD) -> Path:
    (tmp_path / "users.csv").write_text(csv_text)
    path = tmp_path / "schedules.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    return path


def test_a_csv_id_listed_twice_is_an_error_at_the_second_place(tmp_path: Path) -> None:
    path = folder_with(tmp_path, "app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\nu_1,UTC\n")
    csv_path = tmp_path / "users.csv"
    problems = load_problems(path)
    assert f"{csv_path}:4: the user 'u_1' is listed twice (first at {csv_path}:2)." in problems


def test_every_repeat_is_reported_with_its_first_place(tmp_path: Path) -> None:
    rows = "".join(f"u_{i}\n" for i in range(1000)) + "u_7\nu_999\nu_7\n"
    path = folder_with(tmp_path, "app_user_id\n" + rows)
    csv_path = tmp_path / "users.csv"
    problems = [p for p in load_problems(path) if "listed twice" in p]
    assert problems == [
        f"{csv_path}:1002: the user 'u_7' is listed twice (first at {csv_path}:9).",
        f"{csv_path}:1003: the user 'u_999' is listed twice (first at {csv_path}:1001).",
        f"{csv_path}:1004: the user 'u_7' is listed twice (first at {csv_path}:9).",
    ]


def test_many_distinct_ids_are_not_taken_for_repeats(tmp_path: Path) -> None:
    rows = "".join(f"user-{i}\n" for i in range(200_000))
    cfg = config.load(folder_with(tmp_path, "app_user_id\n" + rows))
    assert cfg.audiences["people"].size == 200_000


def test_ids_that_differ_only_in_case_are_different_users(tmp_path: Path) -> None:
    cfg = config.load(folder_with(tmp_path, "app_user_id\nu_1\nU_1\n"))
    assert cfg.audiences["people"].size == 2


def test_an_inline_id_listed_twice_names_the_first_place(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        schedules:
          - id: s
            event_type: "a:b"
            cron: "0 9 * * *"
            users:
              - u_1
              - {id: u_2, timezone: Asia/Tokyo}
              - {id: u_1, timezone: UTC}
        """))
    problems = load_problems(path)
    assert any(p.startswith(f"{path}:9:") and
               f"the user 'u_1' is listed twice (first at {path}:7)." in p for p in problems), (
        problems)


@pytest.mark.parametrize(("cell", "shown"), [
    ('"u_2 "', "'u_2 '"), ('" u_2"', "' u_2'"), ('"u\t2"', "U+0009"), ('"u_2\u200b\x7f"', "U+007F"),
])
def test_csv_ids_are_taken_exactly_as_written(tmp_path: Path, cell: str, shown: str) -> None:
    path = folder_with(tmp_path, f"app_user_id,timezone\nu_1,UTC\n{cell},UTC\n")
    problems = load_problems(path)
    assert len(problems) == 2  # the CSV line, and the reference to it in the schedule file
    line = next(p for p in problems if p.startswith(f"{tmp_path / 'users.csv'}:3:"))
    assert shown in line


def test_inline_ids_with_surrounding_whitespace_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text('version: 1\nschedules:\n  - {id: s, event_type: "a:b", cron: "0 9 * * *",'
                    ' users: [u_1, " u_2"]}\n')
    (problem,) = load_problems(path)
    assert problem.startswith(f"{path}:3:")
    assert "' u_2' has leading or trailing whitespace; ids are taken exactly as written" in (
        problem)


def test_next_for_a_user_uses_the_zone_run_uses(tmp_path: Path) -> None:
    cfg = config.load(folder_with(tmp_path, "app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,\n"))
    (schedule,) = cfg.schedules
    after = datetime(2026, 12, 1, tzinfo=UTC)
    for user_id, zone in (("u_1", "Asia/Tokyo"), ("u_2", "UTC")):
        member = schedule.audience.find(user_id)
        assert member is not None
        (fire,) = plan.upcoming(schedule, after, 1, member)
        assert fire.zone == zone
        # ... the job `run` fires for that zone is the one whose members include the user.
        assert user_id in [m.id for m in schedule.members(zone)]


def test_a_csv_edited_after_validation_never_yields_a_user_twice(tmp_path: Path) -> None:
    cfg = config.load(folder_with(tmp_path, "app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\n"))
    (schedule,) = cfg.schedules
    # Edited while the old plan runs (the reload refuses the file): u_1 now twice.
    (tmp_path / "users.csv").write_text("app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\n"
                                        "u_1,UTC\n")
    served = [(zone, m.id) for zone in schedule.zones() for m in schedule.members(zone)]
    assert sorted(served) == [("Asia/Tokyo", "u_1"), ("UTC", "u_2")]
