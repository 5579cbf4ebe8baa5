"""Quiet hours and calendar windows as instants: eventcron.timing.quiet and .windows.

Property tests run near every 2026 clock change of zones with a 1 h change each way
(Europe/Berlin, America/New_York), a 30 min one (Australia/Lord_Howe) and a 2 h one
(Antarctica/Troll), with windows of any minutes, across midnight or not.
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventcron.timing import (
    WindowUnit,
    in_quiet_hours,
    quiet_end,
    quiet_spans,
    quiet_start,
    resolve_wall,
    window_of,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
TROLL = ZoneInfo("Antarctica/Troll")
ZONES = (BERLIN, NEW_YORK, LORD_HOWE, TROLL)
MINUTE = timedelta(minutes=1)
NIGHT = (time(21), time(8))  # the usual window: across midnight


def utc(year: int, month: int, day: int, *clock: int) -> datetime:
    """Return an aware UTC datetime; ``clock`` is hour, minute and second, as far as given."""
    hour, minute, second = (*clock, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@functools.cache
def changes_2026(zone: ZoneInfo) -> tuple[datetime, ...]:
    """Return the instants the zone's UTC offset changes in 2026 (found by scanning)."""
    found = []
    t = utc(2026, 1, 1)
    prev = t.astimezone(zone).utcoffset()
    while t.year == 2026:
        t2 = t + timedelta(minutes=15)
        offset = t2.astimezone(zone).utcoffset()
        if offset != prev:
            lo, hi = t, t2
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (lo, mid) if mid.astimezone(zone).utcoffset() == offset else (mid, hi)
            found.append(hi.replace(microsecond=0))
        t, prev = t2, offset
    return tuple(found)


def test_the_zones_change_their_clocks_in_2026() -> None:
    """The property tests below are only worth something near real clock changes."""
    for zone in ZONES:
        assert len(changes_2026(zone)) == 2, zone.key
    assert changes_2026(BERLIN) == (utc(2026, 3, 29, 1), utc(2026, 10, 25, 1))


walls = st.builds(time, st.integers(0, 23), st.integers(0, 59))
zones = st.sampled_from(ZONES)
# Minutes (and a few seconds) either side of a clock change: far enough to cover a window
# that began before it and ends after it.
nearby = st.integers(-36 * 60 * 60, 36 * 60 * 60)
units: st.SearchStrategy[WindowUnit] = st.sampled_from(["h", "day", "week"])


def near_change(zone: ZoneInfo, which: int, seconds: int) -> datetime:
    """Return an instant ``seconds`` from the zone's ``which``-th clock change of 2026."""
    return changes_2026(zone)[which] + timedelta(seconds=seconds)


def inside(window: tuple[time, time], zone: ZoneInfo, at: datetime) -> bool:
    """Tell what the window holds at ``at``, by the wall clock (the definition)."""
    return in_quiet_hours(window[0], window[1], zone, at)


def grid(since: datetime, until: datetime) -> list[datetime]:
    """Return instants every minute (from ``since``) in ``(since, until)``, and its edges."""
    out, t = [], since + MINUTE
    while t < until:
        out.append(t)
        t += MINUTE
    return [*out, until - timedelta(seconds=1), until - timedelta(microseconds=1)]


# -- in_quiet_hours ---------------------------------------------------------------------


def test_a_window_across_midnight_holds_the_night_in_each_zone() -> None:
    """21:00-08:00 holds 21:00 and 07:59 local, not 08:00 or 20:59, wherever the user is."""
    at = utc(2026, 12, 7, 22, 30)  # Berlin 23:30, New York 17:30
    assert in_quiet_hours(*NIGHT, BERLIN, at)
    assert not in_quiet_hours(*NIGHT, NEW_YORK, at)
    for zone in (BERLIN, NEW_YORK):
        day = datetime(2026, 12, 8)
        assert in_quiet_hours(*NIGHT, zone, resolve_wall(day.replace(hour=21), zone))
        assert in_quiet_hours(*NIGHT, zone, resolve_wall(day.replace(hour=7, minute=59), zone))
        assert not in_quiet_hours(*NIGHT, zone, resolve_wall(day.replace(hour=8), zone))
        assert not in_quiet_hours(*NIGHT, zone,
                                  resolve_wall(day.replace(hour=20, minute=59), zone))


def test_a_window_within_a_day_and_an_empty_one() -> None:
    """13:00-14:00 holds 13:xx only; from == to holds nothing (the reader refuses it)."""
    noon = resolve_wall(datetime(2026, 6, 1, 13, 30), BERLIN)
    assert in_quiet_hours(time(13), time(14), BERLIN, noon)
    assert not in_quiet_hours(time(13), time(14), BERLIN, noon + timedelta(hours=1))
    assert not in_quiet_hours(time(13), time(13), BERLIN, noon)
    assert quiet_spans(time(13), time(13), BERLIN, noon, noon + timedelta(days=2)) == []
    with pytest.raises(ValueError, match="empty"):
        quiet_start(time(13), time(13), BERLIN, noon)


def test_a_naive_instant_is_refused() -> None:
    """Instants must be aware: a naive one is a bug in the caller, said as such."""
    with pytest.raises(ValueError, match="naive"):
        quiet_end(*NIGHT, BERLIN, datetime(2026, 12, 7, 22))


# -- quiet_end: examples ----------------------------------------------------------------


def test_the_end_is_the_next_local_to_in_two_zones() -> None:
    """The night window ends at 08:00 local: 07:00 UTC in Berlin, 13:00 UTC in New York."""
    assert quiet_end(*NIGHT, BERLIN, utc(2026, 12, 7, 22, 30)) == utc(2026, 12, 8, 7)
    assert quiet_end(*NIGHT, BERLIN, utc(2026, 12, 8, 5)) == utc(2026, 12, 8, 7)
    assert quiet_end(*NIGHT, NEW_YORK, utc(2026, 12, 7, 22, 30)) is None
    assert quiet_end(*NIGHT, NEW_YORK, utc(2026, 12, 8, 4)) == utc(2026, 12, 8, 13)


def test_the_end_across_the_spring_change_is_08_00_summer_time() -> None:
    """Berlin, 2026-03-29: a night of 10 h; 08:00 CEST is 06:00 UTC."""
    assert quiet_end(*NIGHT, BERLIN, utc(2026, 3, 28, 22)) == utc(2026, 3, 29, 6)
    assert quiet_end(*NIGHT, NEW_YORK, utc(2026, 3, 8, 3)) == utc(2026, 3, 8, 12)


def test_the_end_across_the_autumn_change_is_08_00_winter_time() -> None:
    """Berlin, 2026-10-25: a night of 12 h; 08:00 CET is 07:00 UTC."""
    assert quiet_end(*NIGHT, BERLIN, utc(2026, 10, 24, 21)) == utc(2026, 10, 25, 7)


def test_a_to_in_the_spring_gap_ends_the_window_at_the_gap() -> None:
    """02:30 never shows on 2026-03-29 in Berlin: the window ends at 03:00 CEST (01:00 UTC),
    the first instant after the gap, as resolve_wall resolves it; 30 min gaps alike."""
    end = quiet_end(time(22), time(2, 30), BERLIN, utc(2026, 3, 28, 23))
    assert end == utc(2026, 3, 29, 1) == resolve_wall(datetime(2026, 3, 29, 2, 30), BERLIN)
    # Lord Howe, 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11); 02:15 never shows.
    end = quiet_end(time(22), time(2, 15), LORD_HOWE, utc(2026, 10, 3, 12))
    assert end == utc(2026, 10, 3, 15, 30) == changes_2026(LORD_HOWE)[1]


def test_a_to_in_the_autumn_fold_ends_at_its_first_showing_and_holds_the_repeat() -> None:
    """02:30 shows twice on 2026-10-25 in Berlin. The window ends at the first (00:30 UTC);
    when the clock falls back to 02:00 it shows a quiet time again, held until the second
    02:30 (01:30 UTC): nothing is sent while the clock shows 02:00-02:29."""
    window = (time(22), time(2, 30))
    assert quiet_end(*window, BERLIN, utc(2026, 10, 24, 23)) == utc(2026, 10, 25, 0, 30)
    assert quiet_end(*window, BERLIN, utc(2026, 10, 25, 0, 40)) is None  # 02:40 CEST
    assert quiet_end(*window, BERLIN, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 1, 30)
    # Lord Howe, 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30); 01:45 shows twice.
    window = (time(21), time(1, 45))
    assert quiet_end(*window, LORD_HOWE, utc(2026, 4, 4, 14)) == utc(2026, 4, 4, 14, 45)
    assert quiet_end(*window, LORD_HOWE, utc(2026, 4, 4, 15, 10)) == utc(2026, 4, 4, 15, 15)


def test_a_from_in_the_autumn_fold_leaves_the_window_when_the_clock_falls_back() -> None:
    """02:30-06:00 on 2026-10-25 in Berlin: 02:40 CEST is quiet; at the change the clock
    shows 02:00 CET, before the window, so it ends there and opens again at 02:30 CET."""
    window = (time(2, 30), time(6))
    assert quiet_end(*window, BERLIN, utc(2026, 10, 25, 0, 40)) == utc(2026, 10, 25, 1)
    assert quiet_end(*window, BERLIN, utc(2026, 10, 25, 1, 10)) is None
    assert quiet_start(*window, BERLIN, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 1, 30)
    assert quiet_end(*window, BERLIN, utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 5)


def test_a_window_inside_the_spring_gap_never_holds_that_night() -> None:
    """02:10-02:40 on 2026-03-29 in Berlin is all in the gap: that night has no window."""
    window = (time(2, 10), time(2, 40))
    start = quiet_start(*window, BERLIN, utc(2026, 3, 28, 12))
    assert start == resolve_wall(datetime(2026, 3, 30, 2, 10), BERLIN)


def test_quiet_spans_list_the_windows_met() -> None:
    """Three nights met by three days, the first cut at ``since``; one of 12 h (autumn)."""
    spans = quiet_spans(*NIGHT, BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 26, 21))
    assert spans == [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 7)),
                     (utc(2026, 10, 25, 20), utc(2026, 10, 26, 7)),
                     (utc(2026, 10, 26, 20), utc(2026, 10, 27, 7))]


# -- quiet_end, quiet_start, quiet_spans: properties ------------------------------------


@settings(max_examples=300, deadline=None)
@given(zones, st.integers(0, 1), nearby, walls, walls)
@example(BERLIN, 0, -3600, time(22), time(2, 30))  # to in the spring gap
@example(BERLIN, 1, 600, time(22), time(2, 30))  # second pass of the fold
@example(BERLIN, 1, -1200, time(2, 30), time(6))  # from in the fold
@example(LORD_HOWE, 1, -600, time(21), time(2, 15))  # to in a 30 min gap
@example(LORD_HOWE, 0, 600, time(21), time(1, 45))  # second pass of a 30 min fold
@example(TROLL, 1, 1800, time(23), time(2))  # to in a 2 h fold
def test_the_end_is_the_first_instant_the_clock_leaves_the_window(
        zone: ZoneInfo, which: int, seconds: int, start: time, end: time) -> None:
    """Outside: None. Inside: the end is later, outside, and every instant until it inside."""
    if start == end:
        return
    window = (start, end)
    at = near_change(zone, which, seconds)
    stop = quiet_end(start, end, zone, at)
    if not inside(window, zone, at):
        assert stop is None
        return
    assert stop is not None
    assert stop > at
    assert not inside(window, zone, stop)
    assert stop - at <= timedelta(hours=27)
    for t in grid(at, stop):
        assert inside(window, zone, t), (t, stop)


@settings(max_examples=200, deadline=None)
@given(zones, st.integers(0, 1), nearby, walls, walls)
@example(BERLIN, 1, 600, time(2, 30), time(6))  # in the hole the fold makes
def test_the_start_is_the_first_instant_the_clock_enters_the_window(
        zone: ZoneInfo, which: int, seconds: int, start: time, end: time) -> None:
    """The start is ``at`` itself when inside, else later, inside, and nothing before it."""
    if start == end:
        return
    window = (start, end)
    at = near_change(zone, which, seconds)
    begin = quiet_start(start, end, zone, at)
    assert inside(window, zone, begin)
    if inside(window, zone, at):
        assert begin == at
        return
    assert begin > at
    for t in grid(at, begin):
        assert not inside(window, zone, t), (t, begin)


@settings(max_examples=100, deadline=None)
@given(zones, st.integers(0, 1), nearby, st.integers(0, 3 * 86400), st.tuples(walls, walls))
def test_spans_hold_exactly_the_quiet_instants(zone: ZoneInfo, which: int, seconds: int,
                                               length: int, window: tuple[time, time]) -> None:
    """An instant of [since, until] is quiet exactly when a span holds it."""
    start, end = window
    if start == end:
        return
    since = near_change(zone, which, seconds)
    until = since + timedelta(seconds=length)
    spans = quiet_spans(start, end, zone, since, until)
    assert all(a < b for a, b in spans)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
    t = since
    while t <= until:
        held = any(a <= t < b for a, b in spans)
        assert held == inside((start, end), zone, t), t
        t += timedelta(minutes=7)


# -- window_of --------------------------------------------------------------------------


def test_a_local_day_is_23_or_25_hours_on_a_change() -> None:
    """Local midnight to the next local midnight: one day of 23 h and one of 25 h a year."""
    for zone in (BERLIN, NEW_YORK):
        lengths: dict[timedelta, list[date]] = {}
        day = date(2026, 1, 1)
        while day.year == 2026:
            w = window_of("day", zone, resolve_wall(datetime(day.year, day.month, day.day, 12),
                                                    zone))
            lengths.setdefault(w.end - w.start, []).append(day)
            assert w.label == f"{day.isoformat()} ({zone.key})"
            day += timedelta(days=1)
        assert sorted((k, len(v)) for k, v in lengths.items()) == [
            (timedelta(hours=23), 1), (timedelta(hours=24), 363), (timedelta(hours=25), 1)]
    day_of = window_of("day", BERLIN, utc(2026, 3, 29, 12))
    assert (day_of.start, day_of.end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    day_of = window_of("day", BERLIN, utc(2026, 10, 25, 1, 30))  # 02:30 CET, second pass
    assert (day_of.start, day_of.end) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))


def test_weeks_start_on_monday_local_midnight() -> None:
    """Sunday 23:30 Berlin is still the week of Monday 2026-12-07; Monday 00:00 a new one."""
    sunday = window_of("week", BERLIN, utc(2026, 12, 13, 22, 30))
    assert sunday.label == "the week of 2026-12-07 (Europe/Berlin)"
    assert (sunday.start, sunday.end) == (utc(2026, 12, 6, 23), utc(2026, 12, 13, 23))
    monday = window_of("week", BERLIN, utc(2026, 12, 13, 23))
    assert monday.label == "the week of 2026-12-14 (Europe/Berlin)"
    # The week of the autumn change lasts an hour longer.
    autumn = window_of("week", BERLIN, utc(2026, 10, 25, 12))
    assert autumn.end - autumn.start == timedelta(days=7, hours=1)


def test_hours_follow_the_clock_across_30_minute_changes() -> None:
    """Lord Howe: the hour the clock jumps into lasts 30 min; the one it falls back in, 90."""
    spring = window_of("h", LORD_HOWE, utc(2026, 10, 3, 15, 40))  # 02:40 (+11)
    assert spring.end - spring.start == timedelta(minutes=30)
    assert spring.label == "2026-10-04 02:00-03:00 (Australia/Lord_Howe)"
    autumn = window_of("h", LORD_HOWE, utc(2026, 4, 4, 15, 10))  # 01:40 (+10:30), second pass
    assert autumn.end - autumn.start == timedelta(minutes=90)
    assert window_of("h", BERLIN, utc(2026, 12, 7, 13, 5)).label == (
        "2026-12-07 14:00-15:00 (Europe/Berlin)")


def test_an_unknown_unit_is_refused() -> None:
    """The cap reader only makes h, day and week; anything else is a bug, said as such."""
    with pytest.raises(ValueError, match="unknown window unit"):
        window_of("month", BERLIN, utc(2026, 1, 1))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(zones, st.integers(0, 1), nearby, units)
@example(TROLL, 1, 1800, "h")  # the second pass of a 2 h fold repeats an hour's edge
def test_windows_hold_the_instant_and_follow_each_other(
        zone: ZoneInfo, which: int, seconds: int, unit: WindowUnit) -> None:
    """Each window holds its instant, starts where the one before ends, ends where the next
    starts; the clock shows the window's first wall time at its start (or a gap's end)."""
    at = near_change(zone, which, seconds)
    w = window_of(unit, zone, at)
    assert w.start <= at < w.end
    assert window_of(unit, zone, w.end).start == w.end
    assert window_of(unit, zone, w.start - timedelta(microseconds=1)).end == w.start
    assert window_of(unit, zone, w.end - timedelta(microseconds=1)) == w
    shown = w.start.astimezone(zone)
    assert shown.second == 0
    assert shown.minute == 0 or w.start in changes_2026(zone)
