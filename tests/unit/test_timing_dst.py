"""DST behaviour of cron timings, as cronie's cron(8) has it, plus oracle-checked properties.

Transition instants used below (checked against zoneinfo):

* Europe/Berlin       2026-03-29 01:00Z  02:00 CET  -> 03:00 CEST  (gap 02:00-02:59)
                      2026-10-25 01:00Z  03:00 CEST -> 02:00 CET   (02:00-02:59 twice)
* America/New_York    2026-03-08 07:00Z  02:00 EST  -> 03:00 EDT   (gap 02:00-02:59)
                      2026-11-01 06:00Z  02:00 EDT  -> 01:00 EST   (01:00-01:59 twice)
* Australia/Lord_Howe 2026-04-04 15:00Z  02:00 +11  -> 01:30 +1030 (01:30-01:59 twice)
                      2026-10-03 15:30Z  02:00 +1030 -> 02:30 +11  (gap 02:00-02:29)
* America/Santiago    2026-04-05 03:00Z  Sun 00:00 -03 -> Sat 23:00 -04 (Sat 23:xx twice)
                      2026-09-06 04:00Z  Sun 00:00 -04 -> 01:00 -03 (gap 00:00-00:59)
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from eventcron.timing import (
    CronExpr,
    CronSyntaxError,
    CronTiming,
    fires_after,
    jitter_delay,
    resolve_wall,
)
from tests.unit import cron_oracle


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def engine_fires(expr: str, tz: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    timing = CronTiming(CronExpr.parse(expr), tz)
    out: list[datetime] = []
    t = timing.next_after(after)
    while t is not None and t <= until:
        out.append(t)
        t = timing.next_after(t)
    return out


def test_documented_transitions_are_real() -> None:
    expected = {
        "Europe/Berlin": ["2026-03-29T01:00", "2026-10-25T01:00"],
        "America/New_York": ["2026-03-08T07:00", "2026-11-01T06:00"],
        "Australia/Lord_Howe": ["2026-04-04T15:00", "2026-10-03T15:30"],
        "America/Santiago": ["2026-04-05T03:00", "2026-09-06T04:00"],
        "UTC": [],
        "Asia/Tokyo": [],
    }
    for zone, instants in expected.items():
        found = cron_oracle.transitions(ZoneInfo(zone), utc("2026-01-01T00:00"),
                                        utc("2027-01-01T00:00"))
        assert found == [utc(i) for i in instants], zone


# Each row: zone, expression, window (after, until] in UTC, expected fires in UTC.
# The comment gives the local wall times of the expected fires.
DST_CASES = [
    # --- Europe/Berlin, spring forward 2026-03-29 ---
    ("Europe/Berlin", "30 2 * * *", "2026-03-28T00:00", "2026-03-30T23:00",
     ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"]),
    # 02:30 CET; gap -> 03:00 CEST once; 02:30 CEST
    ("Europe/Berlin", "0,30 2 * * *", "2026-03-29T00:00", "2026-03-29T23:00",
     ["2026-03-29T01:00"]),  # two gap times collapse into one fire at 03:00 CEST
    ("Europe/Berlin", "0,30 2,3 * * *", "2026-03-29T00:00", "2026-03-29T23:00",
     ["2026-03-29T01:00", "2026-03-29T01:30"]),  # 03:00 coincides with the gap fire; 03:30
    ("Europe/Berlin", "*/15 * * * *", "2026-03-29T00:30", "2026-03-29T01:30",
     ["2026-03-29T00:45", "2026-03-29T01:00", "2026-03-29T01:15", "2026-03-29T01:30"]),
    # 01:45 CET, then 03:00 03:15 03:30 CEST: nothing for 02:00-02:45
    ("Europe/Berlin", "30 * * * *", "2026-03-28T23:00", "2026-03-29T03:00",
     ["2026-03-28T23:30", "2026-03-29T00:30", "2026-03-29T01:30", "2026-03-29T02:30"]),
    # 00:30 01:30 CET, (02:30 skipped) 03:30 04:30 CEST
    ("Europe/Berlin", "* 2 * * *", "2026-03-28T23:00", "2026-03-29T23:00", []),
    # a wildcard job for 02:xx only: the hour never happens
    # --- Europe/Berlin, fall back 2026-10-25 ---
    ("Europe/Berlin", "30 2 * * *", "2026-10-24T00:00", "2026-10-26T23:00",
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    # 02:30 CEST; 02:30 CEST only (not again at 02:30 CET); 02:30 CET
    ("Europe/Berlin", "30 * * * *", "2026-10-24T22:00", "2026-10-25T03:00",
     ["2026-10-24T22:30", "2026-10-24T23:30", "2026-10-25T00:30", "2026-10-25T01:30",
      "2026-10-25T02:30"]),
    # 00:30 01:30 02:30 CEST, 02:30 CET again, 03:30 CET
    ("Europe/Berlin", "*/15 * * * *", "2026-10-25T00:40", "2026-10-25T01:20",
     ["2026-10-25T00:45", "2026-10-25T01:00", "2026-10-25T01:15"]),
    # 02:45 CEST, 02:00 CET, 02:15 CET
    ("Europe/Berlin", "* 2 * * *", "2026-10-24T23:00", "2026-10-25T03:00",
     [f"2026-10-25T00:{m:02d}" for m in range(60)]
     + [f"2026-10-25T01:{m:02d}" for m in range(60)]),
    # wildcard minute: the whole repeated hour runs twice
    ("Europe/Berlin", "0-59 2 * * *", "2026-10-24T23:00", "2026-10-25T03:00",
     [f"2026-10-25T00:{m:02d}" for m in range(60)]),
    # the same minutes as a fixed-time job: first pass only
    # --- America/New_York, spring forward 2026-03-08 ---
    ("America/New_York", "30 2 * * *", "2026-03-07T00:00", "2026-03-10T00:00",
     ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"]),
    # 02:30 EST; gap -> 03:00 EDT; 02:30 EDT
    ("America/New_York", "*/15 * * * *", "2026-03-08T06:30", "2026-03-08T07:30",
     ["2026-03-08T06:45", "2026-03-08T07:00", "2026-03-08T07:15", "2026-03-08T07:30"]),
    # 01:45 EST, 03:00 03:15 03:30 EDT
    ("America/New_York", "30 * * * *", "2026-03-08T05:00", "2026-03-08T09:00",
     ["2026-03-08T05:30", "2026-03-08T06:30", "2026-03-08T07:30", "2026-03-08T08:30"]),
    # 00:30 01:30 EST, (02:30 skipped) 03:30 04:30 EDT
    # --- America/New_York, fall back 2026-11-01 ---
    ("America/New_York", "30 1 * * *", "2026-10-31T00:00", "2026-11-03T00:00",
     ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    # 01:30 EDT; 01:30 EDT only; 01:30 EST
    ("America/New_York", "30 2 * * *", "2026-11-01T00:00", "2026-11-02T00:00",
     ["2026-11-01T07:30"]),  # 02:30 EST exists once
    ("America/New_York", "30 * * * *", "2026-11-01T03:00", "2026-11-01T08:00",
     ["2026-11-01T03:30", "2026-11-01T04:30", "2026-11-01T05:30", "2026-11-01T06:30",
      "2026-11-01T07:30"]),
    # 23:30 00:30 01:30 EDT, 01:30 EST again, 02:30 EST
    ("America/New_York", "*/15 * * * *", "2026-11-01T05:40", "2026-11-01T06:20",
     ["2026-11-01T05:45", "2026-11-01T06:00", "2026-11-01T06:15"]),
    # 01:45 EDT, 01:00 EST, 01:15 EST
    # --- Australia/Lord_Howe, fall back 2026-04-05 02:00 -> 01:30 ---
    ("Australia/Lord_Howe", "30 1 * * *", "2026-04-03T00:00", "2026-04-06T00:00",
     ["2026-04-03T14:30", "2026-04-04T14:30", "2026-04-05T15:00"]),
    # 01:30 +11; 01:30 +11 only; 01:30 +10:30
    ("Australia/Lord_Howe", "0 * * * *", "2026-04-04T13:00", "2026-04-04T17:00",
     ["2026-04-04T14:00", "2026-04-04T15:30", "2026-04-04T16:30"]),
    # 01:00 +11, 02:00 +10:30 (90 min later), 03:00
    ("Australia/Lord_Howe", "30 * * * *", "2026-04-04T13:00", "2026-04-04T16:10",
     ["2026-04-04T13:30", "2026-04-04T14:30", "2026-04-04T15:00", "2026-04-04T16:00"]),
    # 00:30 01:30 +11, 01:30 +10:30 again (30 min later), 02:30
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T14:00", "2026-04-04T16:00",
     ["2026-04-04T14:45"]),  # 01:45 +11 only
    # --- Australia/Lord_Howe, spring forward 2026-10-04 02:00 -> 02:30 ---
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-02T00:00", "2026-10-05T00:00",
     ["2026-10-02T15:45", "2026-10-03T15:30", "2026-10-04T15:15"]),
    # 02:15 +10:30; gap -> 02:30 +11; 02:15 +11
    ("Australia/Lord_Howe", "0,15,30 2 * * *", "2026-10-03T00:00", "2026-10-04T00:00",
     ["2026-10-03T15:30"]),  # 02:00 and 02:15 skipped, 02:30 exists: one fire
    ("Australia/Lord_Howe", "*/15 * * * *", "2026-10-03T15:00", "2026-10-03T16:00",
     ["2026-10-03T15:15", "2026-10-03T15:30", "2026-10-03T15:45", "2026-10-03T16:00"]),
    # 01:45 +10:30, 02:30 02:45 03:00 +11: nothing for 02:00 and 02:15
    ("Australia/Lord_Howe", "0 * * * *", "2026-10-03T13:00", "2026-10-03T16:30",
     ["2026-10-03T13:30", "2026-10-03T14:30", "2026-10-03T16:00"]),
    # 00:00 01:00 +10:30, (02:00 skipped) 03:00 +11
    # --- America/Santiago, spring forward 2026-09-06 at midnight ---
    ("America/Santiago", "0 0 * * *", "2026-09-04T12:00", "2026-09-07T12:00",
     ["2026-09-05T04:00", "2026-09-06T04:00", "2026-09-07T03:00"]),
    # Sat 00:00 -04; Sun 00:00 does not exist -> 01:00 -03; Mon 00:00 -03
    ("America/Santiago", "30 0 * * 0", "2026-09-01T00:00", "2026-09-14T00:00",
     ["2026-09-06T04:00", "2026-09-13T03:30"]),  # Sundays: gap -> 01:00, then 00:30 -03
    ("America/Santiago", "0 * * * *", "2026-09-06T02:30", "2026-09-06T06:30",
     ["2026-09-06T03:00", "2026-09-06T04:00", "2026-09-06T05:00", "2026-09-06T06:00"]),
    # Sat 23:00 -04, Sun 01:00 02:00 03:00 -03: no Sun 00:00
    ("America/Santiago", "*/30 0 * * *", "2026-09-05T12:00", "2026-09-06T12:00", []),
    # wildcard job for the skipped hour only
    # --- America/Santiago, fall back 2026-04-05: Saturday 23:xx twice ---
    ("America/Santiago", "30 23 * * *", "2026-04-03T12:00", "2026-04-06T12:00",
     ["2026-04-04T02:30", "2026-04-05T02:30", "2026-04-06T03:30"]),
    # Fri 23:30 -03; Sat 23:30 -03 only; Sun 23:30 -04
    ("America/Santiago", "*/20 * * * *", "2026-04-05T02:30", "2026-04-05T03:30",
     ["2026-04-05T02:40", "2026-04-05T03:00", "2026-04-05T03:20"]),
    # Sat 23:40 -03, Sat 23:00 -04, Sat 23:20 -04
    ("America/Santiago", "0 0 * * *", "2026-04-03T12:00", "2026-04-06T12:00",
     ["2026-04-04T03:00", "2026-04-05T04:00", "2026-04-06T04:00"]),
    # Sat 00:00 -03; Sun 00:00 -04 (-03 midnight never shows); Mon 00:00 -04
    ("America/Santiago", "15 23 * * 6", "2026-04-04T12:00", "2026-04-05T12:00",
     ["2026-04-05T02:15"]),  # fixed, Saturday 23:15: first pass only
    ("America/Santiago", "15 * * * 6", "2026-04-04T12:00", "2026-04-05T12:00",
     [f"2026-04-04T{h:02d}:15" for h in range(12, 24)]
     + ["2026-04-05T00:15", "2026-04-05T01:15", "2026-04-05T02:15", "2026-04-05T03:15"]),
    # wildcard, Saturdays: 09:15 ... 23:15 -03, then 23:15 -04 again
    # --- America/St_Johns 2010: transitions at 00:01, so the overlap spans midnight ---
    # 2010-11-07 02:31Z: Sun 00:01 NDT (-02:30) -> Sat 23:01 NST (-03:30)
    ("America/St_Johns", "*/30 * * * *", "2010-11-07T01:40", "2010-11-07T04:10",
     ["2010-11-07T02:00", "2010-11-07T02:30", "2010-11-07T03:00", "2010-11-07T03:30",
      "2010-11-07T04:00"]),
    # Sat 23:30 NDT, Sun 00:00 NDT, Sat 23:30 NST again, Sun 00:00 NST again, 00:30 NST
    ("America/St_Johns", "30 23 * * *", "2010-11-06T12:00", "2010-11-08T12:00",
     ["2010-11-07T02:00", "2010-11-08T03:00"]),  # Sat 23:30 NDT only; Sun 23:30 NST
    ("America/St_Johns", "0 0 * * *", "2010-11-06T00:00", "2010-11-08T12:00",
     ["2010-11-06T02:30", "2010-11-07T02:30", "2010-11-08T03:30"]),
    # Sat 00:00 NDT; Sun 00:00 NDT only; Mon 00:00 NST
    # 2010-03-14 03:31Z: Sun 00:01 NST -> 01:01 NDT (gap 00:01-01:00)
    ("America/St_Johns", "30 0 * * *", "2010-03-13T00:00", "2010-03-15T12:00",
     ["2010-03-13T04:00", "2010-03-14T03:31", "2010-03-15T03:00"]),
    # Sat 00:30 NST; gap -> 01:01 NDT; Mon 00:30 NDT
    # --- no DST ---
    ("UTC", "30 2 * * *", "2026-03-28T00:00", "2026-03-30T00:00",
     ["2026-03-28T02:30", "2026-03-29T02:30"]),
    ("Asia/Tokyo", "30 2 * * *", "2026-03-28T00:00", "2026-03-30T00:00",
     ["2026-03-28T17:30", "2026-03-29T17:30"]),
]


@pytest.mark.parametrize(("zone", "expr", "after", "until", "expected"), DST_CASES)
def test_dst_table(zone: str, expr: str, after: str, until: str,
                   expected: list[str]) -> None:
    tz = ZoneInfo(zone)
    got = engine_fires(expr, tz, utc(after), utc(until))
    assert got == [utc(e) for e in expected]


@pytest.mark.parametrize(("zone", "expr", "after", "until", "expected"), DST_CASES)
def test_dst_table_agrees_with_the_oracle(zone: str, expr: str, after: str, until: str,
                                          expected: list[str]) -> None:
    # Guards the oracle itself: it must reproduce the hand-written expectations.
    tz = ZoneInfo(zone)
    assert cron_oracle.fires(expr, tz, utc(after), utc(until)) == [utc(e) for e in expected]


# A deliberate difference from cronie, written in the README: fixed-time slots that one
# spring-forward gap maps to the same instant are one occurrence (the dedup key is the
# nominal instant), so they are sent once, where cronie runs the job once per slot.
# Each row: zone, expression, the spring-forward day (local), its transition (UTC), and
# the fires from the day before to the day after, in UTC, as cronie's slots map them.
GAP_MERGE_CASES = [
    ("Europe/Berlin", "0 2,3 * * *", "2026-03-29", "2026-03-29T01:00",
     ["2026-03-28T01:00", "2026-03-28T02:00",  # 02:00 03:00 CET
      "2026-03-29T01:00",  # 02:00 (in the gap) and 03:00 CEST: one fire
      "2026-03-30T00:00", "2026-03-30T01:00"]),  # 02:00 03:00 CEST
    ("Europe/Berlin", "0 2,3 * * *", "2027-03-28", "2027-03-28T01:00",
     ["2027-03-27T01:00", "2027-03-27T02:00",
      "2027-03-28T01:00",
      "2027-03-29T00:00", "2027-03-29T01:00"]),
    ("America/New_York", "0 1-3 * * *", "2026-03-08", "2026-03-08T07:00",
     ["2026-03-07T06:00", "2026-03-07T07:00", "2026-03-07T08:00",  # 01:00 02:00 03:00 EST
      "2026-03-08T06:00", "2026-03-08T07:00",  # 01:00 EST; 02:00 (gap) and 03:00 EDT: one
      "2026-03-09T05:00", "2026-03-09T06:00", "2026-03-09T07:00"]),  # 01:00-03:00 EDT
    ("America/New_York", "0 1-3 * * *", "2027-03-14", "2027-03-14T07:00",
     ["2027-03-13T06:00", "2027-03-13T07:00", "2027-03-13T08:00",
      "2027-03-14T06:00", "2027-03-14T07:00",
      "2027-03-15T05:00", "2027-03-15T06:00", "2027-03-15T07:00"]),
]


@pytest.mark.parametrize(("zone", "expr", "day", "transition", "expected"), GAP_MERGE_CASES)
def test_slots_merged_by_a_gap_fire_once(zone: str, expr: str, day: str, transition: str,
                                         expected: list[str]) -> None:
    tz = ZoneInfo(zone)
    jump = utc(transition)
    assert cron_oracle.transitions(tz, jump - timedelta(days=1),
                                   jump + timedelta(days=1)) == [jump]
    local_day = datetime.fromisoformat(day)
    after, until = utc(day) - timedelta(days=1), utc(day) + timedelta(days=1, hours=12)
    got = engine_fires(expr, tz, after, until)
    assert got == [utc(e) for e in expected]
    # cronie's slots on the transition day: more of them than instants, and every
    # instant they map to fires exactly once.
    parsed = CronExpr.parse(expr)
    slots = [resolve_wall(local_day.replace(hour=h, minute=m), tz)
             for h in sorted(parsed.hours) for m in sorted(parsed.minutes)]
    on_the_day = [t for t in got if t.astimezone(tz).date() == local_day.date()]
    assert len(slots) == len(on_the_day) + 1
    assert on_the_day == sorted(set(slots))
    assert jump in on_the_day
    # The same expression through the schedule window API: still once per instant.
    timing = CronTiming(parsed, tz, starts=after, ends=until)
    assert list(fires_after(timing, after, until + timedelta(days=1))) == got


# --- property tests against the oracle ------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "UTC", "Asia/Tokyo", "America/St_Johns"]
TRANSITIONS = {
    zone: cron_oracle.transitions(ZoneInfo(zone), utc("2025-01-01T00:00"),
                                  utc("2028-01-01T00:00"))
    for zone in ZONES
}
# St. John's changed clocks at 00:01 until 2011, so its overlaps spanned midnight.
TRANSITIONS["America/St_Johns"] = cron_oracle.transitions(
    ZoneInfo("America/St_Johns"), utc("2009-01-01T00:00"), utc("2011-06-01T00:00"))
YEAR_START, YEAR_SECONDS = utc("2025-01-01T00:00"), 3 * 365 * 86400


@st.composite
def value_token(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None,
                first: int) -> tuple[int, str]:
    n = draw(st.integers(lo, hi))
    if names is not None and n - first < len(names) and draw(st.booleans()):
        case = draw(st.sampled_from([str.lower, str.upper, str.title]))
        return n, case(names[n - first])
    return n, str(n)


@st.composite
def element(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None, first: int) -> str:
    kind = draw(st.sampled_from(["n", "n", "range", "star_step", "range_step"]))
    step = draw(st.one_of(st.integers(1, 6), st.integers(1, hi)))
    if kind == "star_step":
        return f"*/{step}"
    a, a_tok = draw(value_token(lo, hi, names, first))
    if kind == "n":
        return a_tok
    _, b_tok = draw(value_token(a, hi, names, first))
    return f"{a_tok}-{b_tok}" + (f"/{step}" if kind == "range_step" else "")


@st.composite
def field_text(draw: st.DrawFn, lo: int, hi: int, star_percent: int, *,
               names: list[str] | None = None, first: int = 0) -> str:
    if draw(st.integers(0, 99)) < star_percent:
        return "*" if draw(st.integers(0, 3)) else f"*/{draw(st.integers(1, 4))}"
    parts = draw(st.lists(element(lo, hi, names, first), min_size=1, max_size=3))
    return ",".join(parts)


@st.composite
def cron_text(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["@hourly", "@daily", "@midnight", "@weekly",
                                     "@monthly", "@yearly", "@annually", "@DAILY"]))
    fields = [
        draw(field_text(0, 59, 25)),
        draw(field_text(0, 23, 40)),
        draw(field_text(1, 31, 70)),
        draw(field_text(1, 12, 80, names=cron_oracle.MONTHS, first=1)),
        draw(field_text(0, 7, 60, names=cron_oracle.DAYS)),
    ]
    return " ".join(fields)


@st.composite
def window_start(draw: st.DrawFn, zone: str) -> datetime:
    transitions = TRANSITIONS[zone]
    near_transition = draw(st.integers(0, 4)) < 4  # mostly
    if transitions and near_transition:
        base = draw(st.sampled_from(transitions))
        # Within 3 days either side, but mostly up to 2 days before, so that the
        # 2-4 day window spans the transition.
        seconds = draw(st.one_of(st.integers(-2 * 86400, -60),
                                 st.integers(-3 * 86400, 3 * 86400)))
        return base + timedelta(seconds=seconds)
    return YEAR_START + timedelta(seconds=draw(st.integers(0, YEAR_SECONDS)))


@st.composite
def case(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return draw(cron_text()), zone, draw(window_start(zone))


@settings(max_examples=150, deadline=None)
@given(case(), st.integers(2 * 1440, 4 * 1440))
def test_engine_matches_cronie_oracle(sample: tuple[str, str, datetime],
                                      minutes: int) -> None:
    expr, zone, start = sample
    job = cron_oracle.parse(expr)
    assume(not cron_oracle.never_fires(job))
    tz = ZoneInfo(zone)
    e = CronExpr.parse(expr)
    # The parser agrees with the oracle's reading.
    assert (e.minutes, e.hours, e.days, e.months, e.weekdays) == (
        job.minute, job.hour, job.dom, job.month, job.dow)
    assert (e.dom_restricted, e.dow_restricted, e.fixed_time) == (
        not job.dom_star, not job.dow_star, not job.wildcard)
    until = start + timedelta(minutes=minutes)
    assert engine_fires(expr, tz, start, until) == cron_oracle.fires(expr, tz, start, until)


@settings(max_examples=150, deadline=None)
@given(cron_text())
def test_never_fires_is_rejected_exactly_when_the_oracle_says_so(expr: str) -> None:
    job = cron_oracle.parse(expr)
    if cron_oracle.never_fires(job):
        with pytest.raises(CronSyntaxError, match="never fires"):
            CronExpr.parse(expr)
    else:
        assert CronExpr.parse(expr).source == expr


@settings(max_examples=80, deadline=None)
@given(case(), st.integers(1, 2 * 1440))
def test_fires_are_ascending_strict_and_each_is_found_from_just_before(
        sample: tuple[str, str, datetime], minutes: int) -> None:
    expr, zone, start = sample
    job = cron_oracle.parse(expr)
    assume(not cron_oracle.never_fires(job))
    tz = ZoneInfo(zone)
    timing = CronTiming(CronExpr.parse(expr), tz)
    got = engine_fires(expr, tz, start, start + timedelta(minutes=minutes))
    assert all(a < b for a, b in itertools.pairwise(got))
    for t in got:
        assert t > start
        assert t.second == 0
        assert t.microsecond == 0
        assert timing.next_after(t - timedelta(seconds=1)) == t
        assert timing.next_after(t - timedelta(microseconds=1)) == t
        local = t.astimezone(tz)
        if not cron_oracle.matches(job, local.replace(tzinfo=None)):
            # Only a fixed-time job may fire at a wall time it does not list, and only
            # at the instant the clocks jumped forward over a listed time.
            before = (t - timedelta(seconds=1)).astimezone(tz).utcoffset()
            now = local.utcoffset()
            assert not job.wildcard
            assert before is not None
            assert now is not None
            assert now > before


@settings(max_examples=200, deadline=None)
@given(case(), st.integers(0, 59), st.integers(0, 999_999))
def test_next_after_is_strictly_after(sample: tuple[str, str, datetime], second: int,
                                      micro: int) -> None:
    expr, zone, start = sample
    assume(not cron_oracle.never_fires(cron_oracle.parse(expr)))
    point = start.replace(second=second, microsecond=micro)
    t = CronTiming(CronExpr.parse(expr), ZoneInfo(zone)).next_after(point)
    assert t is not None
    assert t > point
    # Nothing fires in between: the oracle agrees on the first fire when it is near.
    if t - point <= timedelta(days=2):
        assert cron_oracle.fires(expr, ZoneInfo(zone), point, t) == [t]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.data())
def test_resolve_wall_round_trips_or_lands_on_a_jump(zone: str, data: st.DataObject) -> None:
    tz = ZoneInfo(zone)
    start = data.draw(window_start(zone))
    wall = start.astimezone(tz).replace(tzinfo=None) + timedelta(
        minutes=data.draw(st.integers(-120, 120)))
    got = resolve_wall(wall, tz)
    assert got.tzinfo is UTC
    local = got.astimezone(tz)
    if local.replace(tzinfo=None) == wall:
        # An existing wall time: no earlier instant (within 3 h) shows it too.
        for k in range(1, 181):
            earlier = (got - timedelta(minutes=k)).astimezone(tz).replace(tzinfo=None)
            assert earlier != wall
    else:
        # A skipped wall time: the transition instant, over which the clocks pass it.
        before = (got - timedelta(seconds=1)).astimezone(tz)
        assert before.utcoffset() != local.utcoffset()
        assert before.replace(tzinfo=None) < wall < local.replace(tzinfo=None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20),
       st.integers(0, 4_000_000_000), st.integers(0, 86_400_000))
def test_jitter_in_range(schedule_id: str, user_id: str, seconds: int, jitter_ms: int) -> None:
    nominal = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    jitter = timedelta(milliseconds=jitter_ms)
    delay = jitter_delay(schedule_id, user_id, nominal, jitter)
    if jitter_ms == 0:
        assert delay == timedelta(0)
    else:
        assert timedelta(0) <= delay < jitter
    assert delay % timedelta(milliseconds=1) == timedelta(0)
    assert delay == jitter_delay(schedule_id, user_id, nominal, jitter)
