"""Comparing plans: schedules added, removed, changed, and the occurrences they move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventcron import config
from eventcron.firing.plandiff import compare, occurrences, shift, summarize
from tests.unit.fakes import write_config

T = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_compare_names_added_removed_changed_fields_and_switches(tmp_path: Path) -> None:
    old = write_config(tmp_path, """
        - {id: a, event_type: "e:a", cron: "0 9 * * *", users: [u1]}
        - {id: b, event_type: "e:b", every: 1h, users: [u1], enabled: false}
        - {id: c, event_type: "e:c", every: 1h, users: [u1]}
        - {id: gone, event_type: "e:g", every: 1h, users: [u1]}
        """, name="old.yaml")
    new = write_config(tmp_path, """
        - {id: a, event_type: "e:a", cron: "0 10 * * *", users: [u1, u2]}
        - {id: b, event_type: "e:b", every: 1h, users: [u1]}
        - {id: c, event_type: "e:c", every: 1h, users: [u1]}
        - {id: new, event_type: "e:n", every: 1h, users: [u1]}
        """, name="new.yaml")
    change = compare(summarize(old), summarize(new))
    assert change.added == ("new",) and change.removed == ("gone",)
    assert change.changed == {"a": ("cron", "users"), "b": ("enabled",)}
    assert change.retimed == ("a",)
    assert (change.enabled, change.disabled) == (("b",), ())
    assert compare(summarize(new), summarize(new)).empty
    assert compare(None, summarize(new)).added == ("a", "b", "c", "new")


def test_occurrences_count_each_zones_users_and_shift_keeps_only_differences(
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
        - id: s
          event_type: "e:s"
          cron: "0 9 * * *"
          timezone: user
          users: [{id: b1, timezone: Europe/Berlin}, {id: b2, timezone: Europe/Berlin},
                  {id: n1, timezone: America/New_York}]
        """)
    (s,) = cfg.schedules
    got = occurrences(s, T, T + timedelta(days=1))
    assert got == {datetime(2026, 12, 1, 8, tzinfo=UTC): 2,  # 09:00 in Berlin
                   datetime(2026, 12, 1, 14, tzinfo=UTC): 1}  # 09:00 in New York
    moved = shift(got, {datetime(2026, 12, 1, 8, tzinfo=UTC): 2,
                        datetime(2026, 12, 1, 15, tzinfo=UTC): 1})
    assert moved.added == ((datetime(2026, 12, 1, 15, tzinfo=UTC), 1),)
    assert moved.removed == ((datetime(2026, 12, 1, 14, tzinfo=UTC), 1),)
    assert occurrences(None, T, T + timedelta(days=1)) == {}


def test_a_members_zone_or_fields_or_the_data_template_count_as_changes(
        tmp_path: Path) -> None:
    base = """
        - id: s
          event_type: "e:s"
          cron: "0 9 * * *"
          timezone: user
          users: [{{id: u1, timezone: {zone}, plan: {plan}}}]
          data: {{who: "{who}"}}
        """
    def load(name: str, zone: str = "Europe/Berlin", plan: str = "gold",
             who: str = "${app_user_id}") -> dict[str, dict[str, object]]:
        return summarize(write_config(tmp_path, base.format(zone=zone, plan=plan, who=who),
                                      name=name))

    old = load("old.yaml")
    assert compare(old, load("zone.yaml", zone="America/New_York")).changed == {"s": ("users",)}
    assert compare(old, load("plan.yaml", plan="silver")).changed == {"s": ("users",)}
    assert compare(old, load("data.yaml", who="app_user_id")).changed == {"s": ("data",)}
    assert compare(old, load("same.yaml")).empty


def test_one_audience_file_named_two_ways_is_the_same_audience(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "users.csv").write_text("app_user_id\nu1\n")
    body = """
        - {id: s, event_type: "e:s", every: 1h, audience: people}
        """
    extra = "audiences:\n  people: {file: users.csv}\n"
    absolute = write_config(tmp_path, body, extra=extra)
    monkeypatch.chdir(tmp_path)
    relative = config.load(Path(absolute.path.name))
    assert relative.schedules[0].audience.file != absolute.schedules[0].audience.file
    assert compare(summarize(absolute), summarize(relative)).empty


def test_switching_a_schedule_off_or_on_is_said_as_such(tmp_path: Path) -> None:
    old = write_config(tmp_path, """
        - {id: a, event_type: "e:a", every: 1h, users: [u1]}
        - {id: b, event_type: "e:b", every: 1h, users: [u1], enabled: false}
        - {id: c, event_type: "e:c", every: 1h, users: [u1]}
        """, name="old.yaml")
    new = write_config(tmp_path, """
        - {id: a, event_type: "e:a", every: 2h, users: [u1], enabled: false}
        - {id: b, event_type: "e:b", every: 1h, users: [u1]}
        - {id: c, event_type: "e:c", every: 1h, users: [u1, u2]}
        """, name="new.yaml")
    change = compare(summarize(old), summarize(new))
    assert [change.label(sid) for sid in ("a", "b", "c")] == [
        ("disabled", "a (every)"), ("enabled", "b"), ("changed", "c (users)")]
    assert change.describe() == "disabled a (every); enabled b; changed c (users)"
