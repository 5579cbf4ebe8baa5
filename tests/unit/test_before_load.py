"""The latest occurrence before an instant, what a load passes over, what `fire` picks."""

from __future__ import annotations

import textwrap
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcron import config
from eventcron.firing import catchup, plan
from eventcron.timing import AtTiming, CronExpr, CronTiming, EveryTiming, fires_after, latest_until

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
T = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)

# Each expression with a look-back that surely holds one of its fires, for the brute force.
EXPRESSIONS = {"* * * * *": 1, "*/7 * * * *": 1, "0 9 * * 1-5": 4, "30 2 * * *": 2,
               "0 0 29 2 *": 4 * 366 + 1, "15 3 1,15 * sun": 366, "0 2,3 * * *": 2,
               "0 0 1 1 *": 367, "59 23 31 12 *": 367}


def brute_latest(timing: CronTiming, until: datetime, days: int) -> datetime | None:
    latest = None
    for t in fires_after(timing, until - timedelta(days=days), until):
        latest = t
    return latest


@settings(max_examples=150, deadline=None)
@given(expr=st.sampled_from(sorted(EXPRESSIONS)),
       when=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                         timezones=st.just(UTC)))
def test_latest_until_matches_walking_forward(expr: str, when: datetime) -> None:
    timing = CronTiming(CronExpr.parse(expr), BERLIN)
    assert latest_until(timing, when) == brute_latest(timing, when, EXPRESSIONS[expr])


@settings(max_examples=100, deadline=None)
@given(seconds=st.integers(1, 90_000), offset=st.integers(-10**6, 10**6),
       when=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                         timezones=st.just(UTC)))
def test_latest_until_of_an_interval_is_on_its_grid(seconds: int, offset: int,
                                                   when: datetime) -> None:
    anchor = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    timing = EveryTiming(timedelta(seconds=seconds), anchor)
    found = latest_until(timing, when)
    assert found is not None and found <= when
    assert timing.next_after(found - timedelta(microseconds=1)) == found  # on the grid
    following = timing.next_after(found)
    assert following is not None and following > when  # and the last one not after `when`


def test_latest_until_respects_starts_ends_and_one_offs() -> None:
    daily = CronExpr.parse("0 9 * * *")
    utc = zoneinfo.ZoneInfo("UTC")
    starts = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert latest_until(CronTiming(daily, utc, starts=starts), T) is None
    ends = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert latest_until(CronTiming(daily, utc, ends=ends), T) == datetime(2026, 11, 20, 9,
                                                                        tzinfo=UTC)
    every = EveryTiming(timedelta(minutes=15), starts, starts=starts)
    assert latest_until(every, T) is None
    assert latest_until(every, starts) == starts
    assert latest_until(AtTiming(T), T) == T
    assert latest_until(AtTiming(T), T - timedelta(seconds=1)) is None


def test_a_load_passes_over_the_latest_occurrence_within_catch_up() -> None:
    timing = CronTiming(CronExpr.parse("0 * * * *"), zoneinfo.ZoneInfo("UTC"))
    assert catchup.passed_before_load(timing, T, 3600) == datetime(2026, 12, 1, 10,
                                                                   tzinfo=UTC)
    assert catchup.passed_before_load(timing, T, 1799) is None  # 10:00 is 30 min back
    assert catchup.passed_before_load(timing, T.replace(minute=0), 0) == T.replace(minute=0)
    at = AtTiming(T - timedelta(seconds=2))
    assert catchup.passed_before_load(at, T, 3600) == T - timedelta(seconds=2)
    assert catchup.passed_before_load(AtTiming(T + timedelta(seconds=1)), T, 3600) is None


def load(tmp_path: Path, body: str) -> config.Config:
    path = tmp_path / "schedules.yaml"
    path.write_text("version: 1\n" + textwrap.dedent(body))
    return config.load(path)


def test_fire_picks_the_latest_occurrence_of_each_zone(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        schedules:
          - id: s
            event_type: "a:b"
            cron: "0 9 * * *"
            timezone: user
            users: [{id: u_1, timezone: Asia/Tokyo}, {id: u_2, timezone: Europe/Berlin}]
        """)
    (schedule,) = cfg.schedules
    picked = plan.occurrences_to_fire(schedule, T)
    assert [(job.zone, t) for job, t in picked] == [
        ("Asia/Tokyo", datetime(2026, 12, 1, 0, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2026, 12, 1, 8, tzinfo=UTC)),
    ]
    tokyo = datetime(2026, 11, 30, 0, tzinfo=UTC)
    assert [(job.zone, t) for job, t in plan.occurrences_to_fire(schedule, T, tokyo)] == [
        ("Asia/Tokyo", tokyo)]


def test_fire_refuses_a_time_that_is_no_occurrence_naming_the_nearest(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        schedules:
          - {id: s, event_type: "a:b", cron: "0 9 * * *", users: [u_1]}
          - {id: later, event_type: "a:b", at: "2027-01-01T00:00:00Z", users: [u_1]}
        """)
    daily, later = cfg.schedules
    with pytest.raises(plan.NoSuchOccurrence) as info:
        plan.occurrences_to_fire(daily, T, T)
    assert str(info.value) == (
        "2026-12-01T10:30:00Z is not an occurrence of schedule 's'; the nearest are"
        " 2026-12-01T09:00:00Z and 2026-12-02T09:00:00Z.")
    with pytest.raises(plan.NoSuchOccurrence) as info:
        plan.occurrences_to_fire(later, T)
    assert str(info.value) == ("schedule 'later' has no occurrence at or before now; its first"
                               " is 2027-01-01T00:00:00Z.")


def test_schedules_that_will_never_fire_are_warned_about(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        schedules:
          - {id: gone, event_type: "a:b", at: "2026-12-01T10:00:00", users: [u_1]}
          - {id: ended, event_type: "a:b", cron: "0 9 * * *", ends: "2026-11-30T00:00:00",
             users: [u_1]}
          - {id: last-one-left, event_type: "a:b", cron: "0 9 * * *",
             ends: "2026-12-01T12:00:00", users: [u_1]}
          - {id: off, event_type: "a:b", at: "2026-01-01T00:00:00", users: [u_1], enabled: false}
          - {id: fine, event_type: "a:b", at: "2026-12-01T11:00:00", users: [u_1]}
        """)
    path = cfg.path
    assert plan.never_firing(cfg, T) == [
        f"{path}:3: warning: schedule 'gone': its at: (2026-12-01T10:00:00) is already past;"
        " it will never fire.",
        f"{path}:4: warning: schedule 'ended': its ends: (2026-11-30T00:00:00) is already past;"
        " it will never fire.",
        f"{path}:6: warning: schedule 'last-one-left': it has no occurrence left before its"
        " ends: (2026-12-01T12:00:00); it will never fire.",
    ]
    later = T.replace(hour=11)
    assert [w.split("'")[1] for w in plan.never_firing(cfg, later)] == [
        "gone", "ended", "last-one-left", "fine"]
