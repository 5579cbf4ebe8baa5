"""Comparing plans: schedules added, removed, changed, and the occurrences they move."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from eventcron import config
from eventcron.campaign import Rules, Verdict
from eventcron.config.audience import Member
from eventcron.firing.plandiff import Occurrences, compare, occurrences, shift, summarize
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


# --- campaign rules: skips and opt-outs change what occurrences send ------------------------


def counted(cfg: config.Config, start: datetime = T, days: int = 7,
            rules: Rules | None = None) -> Occurrences:
    (s,) = cfg.schedules
    return occurrences(s, start, start + timedelta(days=days), rules or Rules(cfg),
                       timedelta(seconds=cfg.delivery.expires_after))


RULED = """
    - id: s
      event_type: "e:s"
      cron: "0 9 * * *"
      timezone: Europe/Berlin
      users: [u1, u2, u3]
      {skip}
    """


def test_a_skip_date_removes_its_occurrence_and_an_opt_out_lowers_every_count(
        tmp_path: Path) -> None:
    old = write_config(tmp_path, RULED.format(skip=""), name="old.yaml")
    before = counted(old)
    assert before == {datetime(2026, 12, day, 8, tzinfo=UTC): 3 for day in range(1, 8)}
    skipping = write_config(tmp_path, RULED.format(skip="skip: {dates: [2026-12-03]}"),
                            name="skipping.yaml")
    moved = shift(before, counted(skipping))
    assert moved.added == ()
    assert moved.removed == ((datetime(2026, 12, 3, 8, tzinfo=UTC), 3),)
    (tmp_path / "optouts.csv").write_text("app_user_id\nu2\nnot-in-the-audience\n")
    opted = write_config(tmp_path, RULED.format(skip=""), name="opted.yaml",
                         extra="suppress: {file: optouts.csv}\n")
    assert counted(opted) == dict.fromkeys(before, 2)
    assert compare(summarize(old), summarize(skipping)).changed == {"s": ("skip",)}
    assert compare(summarize(old), summarize(opted)).label("s") == ("changed", "s (suppress)")


def test_per_user_skips_lower_an_occurrences_count_without_removing_it(
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
        - id: s
          event_type: "e:s"
          cron: "0 23 * * *"
          timezone: Europe/Berlin
          skip: {dates: [2026-12-25], holidays: user.country}
          users: [{id: b1, country: DE}, {id: b2, country: US},
                  {id: t1, timezone: Asia/Tokyo, country: JP}]
        """)
    # 23:00 in Berlin is 07:00 the next day in Tokyo: t1 skips the occurrence of the 24th
    # (the 25th there), b1 and b2 that of the 25th, b1 also Boxing Day (a DE holiday).
    assert counted(cfg, datetime(2026, 12, 23, tzinfo=UTC), days=4) == {
        datetime(2026, 12, 23, 22, tzinfo=UTC): 3, datetime(2026, 12, 24, 22, tzinfo=UTC): 2,
        datetime(2026, 12, 25, 22, tzinfo=UTC): 1, datetime(2026, 12, 26, 22, tzinfo=UTC): 2}


class CountingRules:
    """The rules of a config, counting the verdicts asked of them."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.verdicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rules, name)

    def judge(self, *args: Any) -> Callable[[Member], Verdict]:
        verdict = self.rules.judge(*args)

        def counted(member: Member) -> Verdict:
            self.verdicts += 1
            return verdict(member)
        return counted


def test_a_csv_audience_is_judged_once_per_group_not_once_per_user(tmp_path: Path) -> None:
    zones, countries = ("Europe/Berlin", "Asia/Tokyo"), ("DE", "US")
    users = [(f"u{i}", zones[i % 2], countries[i // 2 % 2]) for i in range(2000)]
    (tmp_path / "users.csv").write_text(
        "app_user_id,timezone,country\n" + "".join(f"{u},{z},{c}\n" for u, z, c in users))
    (tmp_path / "optouts.csv").write_text(
        "app_user_id\n" + "".join(f"u{i}\n" for i in range(0, 2000, 7)))
    cfg = write_config(tmp_path, """
        - id: s
          event_type: "e:s"
          cron: "0 23 * * *"
          timezone: Europe/Berlin
          skip: {dates: [2026-12-25], holidays: user.country}
          audience: people
        """, extra="audiences:\n  people: {file: users.csv}\nsuppress: {file: optouts.csv}\n")
    rules = CountingRules(Rules(cfg))
    start = datetime(2026, 12, 22, tzinfo=UTC)
    got = counted(cfg, start, days=6, rules=cast(Rules, rules))
    assert len(got) == 6
    assert rules.verdicts <= 6 * 8  # (recipient zone, country, opted out): 8 groups
    # The same counts as asking for every user's verdict one by one:
    (s,) = cfg.schedules
    real = Rules(cfg)
    one_by_one = {t: sum(1 for m in s.audience.iter_members()
                         if real.judge(s, "Europe/Berlin", t, t + timedelta(hours=6))(m).status
                         == "pending") for t in got}
    assert got == one_by_one
    assert min(got.values()) < max(got.values()) < 2000


def test_diff_counts_the_events_a_skip_date_and_an_opt_out_file_take_away(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eventcron.cli import main

    # diff compares from the real now: a skip date three days ahead is always in --days 7.
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    body = """
        - {{id: s, event_type: "e:s", cron: "0 12 * * *", users: [u1, u2, u3]{skip}}}
        """
    old = write_config(tmp_path, body.format(skip=""), name="old.yaml").path
    skipping = write_config(tmp_path, body.format(skip=f", skip: {{dates: [{day}]}}"),
                            name="skipping.yaml").path
    assert main(["diff", str(skipping), "--against", str(old), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["schedules"]["changed"] == {"s": ["skip"]}
    assert report["occurrences"]["s"] == {
        "added": [], "removed": [{"occurrence": f"{day}T12:00:00Z", "events": 3}]}
    assert (report["events_added"], report["events_removed"]) == (0, 3)
    assert main(["diff", str(skipping), "--against", str(old)]) == 1
    assert "~ s (skip): -1 occurrence (3 events)" in capsys.readouterr().out

    (tmp_path / "optouts.csv").write_text("app_user_id\nu3\n")
    opted = write_config(tmp_path, body.format(skip=""), name="opted.yaml",
                         extra="suppress: {file: optouts.csv}\n").path
    assert main(["diff", str(opted), "--against", str(old), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    # Each of the 7 occurrences now sends 2 events instead of 3.
    assert (report["events_added"], report["events_removed"]) == (14, 21)
    assert {o["events"] for o in report["occurrences"]["s"]["added"]} == {2}
