"""Unit tests for eventcron.timing: parsing, day rule, next_after, timings, jitter."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcron.timing import UTC as TIMING_UTC
from eventcron.timing import (
    AtTiming,
    CronExpr,
    CronSyntaxError,
    CronTiming,
    EveryTiming,
    Timing,
    fires_after,
    jitter_delay,
    resolve_wall,
)

ALL_MINUTES = frozenset(range(60))
ALL_HOURS = frozenset(range(24))
ALL_DAYS = frozenset(range(1, 32))
ALL_MONTHS = frozenset(range(1, 13))
ALL_WEEKDAYS = frozenset(range(7))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    """Parse 'YYYY-MM-DDTHH:MM[:SS]' as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, zone: str, after: str, count: int) -> list[datetime]:
    e, tz = CronExpr.parse(expr), ZoneInfo(zone)
    out: list[datetime] = []
    t: datetime | None = utc(after)
    for _ in range(count):
        assert t is not None
        t = e.next_after(t, tz)
        assert t is not None
        out.append(t)
    return out


# --- parsing ---------------------------------------------------------------------------

PARSE_CASES = [
    # expr, minutes, hours, days, months, weekdays
    ("0 0 * * *", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("*/15 * * * *", {0, 15, 30, 45}, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("10-50/20 1-5,10,20-22 * * *", {10, 30, 50}, {1, 2, 3, 4, 5, 10, 20, 21, 22},
     ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("0 */6 1,15 * *", {0}, {0, 6, 12, 18}, {1, 15}, ALL_MONTHS, ALL_WEEKDAYS),
    ("0 0 */10 */5 *", {0}, {0}, {1, 11, 21, 31}, {1, 6, 11}, ALL_WEEKDAYS),
    ("0 0 * JAN,jul Mon-FRI", {0}, {0}, ALL_DAYS, {1, 7}, {1, 2, 3, 4, 5}),
    ("0 0 * feb-Apr sun", {0}, {0}, ALL_DAYS, {2, 3, 4}, {0}),
    ("0 0 * dec 7", {0}, {0}, ALL_DAYS, {12}, {0}),
    ("0 0 * * 0", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}),
    ("0 0 * * 0,7", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}),
    ("0 0 * * 5-7", {0}, {0}, ALL_DAYS, ALL_MONTHS, {5, 6, 0}),
    ("0 0 * * 0-7", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("0 0 * * sun-sat", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("0 0 * * */2", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0, 2, 4, 6}),
    ("0 0 * * */7", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}),
    ("0 0 * * 1-7/3", {0}, {0}, ALL_DAYS, ALL_MONTHS, {1, 4, 0}),
    ("0 0 * * mon-sat/2", {0}, {0}, ALL_DAYS, ALL_MONTHS, {1, 3, 5}),
    ("59 23 31 12 *", {59}, {23}, {31}, {12}, ALL_WEEKDAYS),
    ("00 05 01 01 *", {0}, {5}, {1}, {1}, ALL_WEEKDAYS),
    ("*/59 */23 */31 */12 */7", {0, 59}, {0, 23}, {1}, {1}, {0}),
    ("  0\t0  *  *  *\n", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("@yearly", {0}, {0}, {1}, {1}, ALL_WEEKDAYS),
    ("@annually", {0}, {0}, {1}, {1}, ALL_WEEKDAYS),
    ("@monthly", {0}, {0}, {1}, ALL_MONTHS, ALL_WEEKDAYS),
    ("@weekly", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}),
    ("@daily", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("@MIDNIGHT", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
    ("@Hourly", {0}, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS),
]


@pytest.mark.parametrize(("expr", "expected"), [(row[0], row[1:]) for row in PARSE_CASES])
def test_parse_expands_fields(expr: str, expected: tuple[set[int], ...]) -> None:
    e = CronExpr.parse(expr)
    got = (e.minutes, e.hours, e.days, e.months, e.weekdays)
    assert tuple(set(values) for values in got) == expected
    assert e.source == expr.strip()


FLAG_CASES = [
    # expr, dom_restricted, dow_restricted, fixed_time
    ("0 0 * * *", False, False, True),
    ("0 0 1 * *", True, False, True),
    ("0 0 * * 1", False, True, True),
    ("0 0 1 * 1", True, True, True),
    ("0 0 */2 * 1", False, True, True),
    ("0 0 1 * */2", True, False, True),
    ("0 0 1-31 * 0-7", True, True, True),
    ("*/5 1 * * *", False, False, False),
    ("5 * * * *", False, False, False),
    ("*/1 * * * *", False, False, False),
    ("0-59 2 * * *", False, False, True),
    ("30 2,3 * * *", False, False, True),
    ("@hourly", False, False, False),
    ("@daily", False, False, True),
    ("@weekly", False, True, True),
    ("@monthly", True, False, True),
    ("@yearly", True, False, True),
]


@pytest.mark.parametrize(("expr", "dom", "dow", "fixed"), FLAG_CASES)
def test_parse_flags(expr: str, dom: bool, dow: bool, fixed: bool) -> None:
    e = CronExpr.parse(expr)
    assert (e.dom_restricted, e.dow_restricted, e.fixed_time) == (dom, dow, fixed)


def test_macro_equals_its_expansion_except_source() -> None:
    for macro, expansion in [("@yearly", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
                             ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"),
                             ("@hourly", "0 * * * *")]:
        a, b = CronExpr.parse(macro), CronExpr.parse(expansion)
        assert (a.minutes, a.hours, a.days, a.months, a.weekdays, a.dom_restricted,
                a.dow_restricted, a.fixed_time) == (
            b.minutes, b.hours, b.days, b.months, b.weekdays, b.dom_restricted,
            b.dow_restricted, b.fixed_time)
        assert a.source == macro


ERROR_CASES = [
    # expr, text the message must contain, offset, length
    ("61 * * * *", "minute 61 is out of range 0-59", 0, 2),
    ("* 24 * * *", "hour 24 is out of range 0-23", 2, 2),
    ("* * 0 * *", "day of month 0 is out of range 1-31", 4, 1),
    ("* * 32 * *", "day of month 32 is out of range 1-31", 4, 2),
    ("* * * 13 *", "month 13 is out of range 1-12", 6, 2),
    ("* * * 0 *", "month 0 is out of range 1-12", 6, 1),
    ("* * * * 8", "day of week 8 is out of range 0-7 (0 and 7 are Sunday)", 8, 1),
    ("1-99 * * * *", "minute 99 is out of range 0-59", 2, 2),
    ("5/2 * * * *", "use 5-59/2", 0, 3),
    ("* * * * 1/2", "use 1-7/2", 8, 3),
    ("5-1 * * * *", "minute range '5-1' is reversed", 0, 3),
    ("* * * * mon-sun", "use mon-sat,sun or 1-7", 8, 7),
    ("* * * * 5-0", "or 5-7", 8, 3),
    ("* * * nov-feb *", "use nov-dec,jan-feb", 6, 7),
    ("* 22-2 * * *", "use 22-23,0-2", 2, 4),
    ("10-5/2 * * * *", "reversed", 0, 4),
    ("*/0 * * * *", "minute step 0 is invalid", 2, 1),
    ("*/60 * * * *", "minute step 60 is too large", 2, 2),
    ("* */24 * * *", "hour step 24 is too large", 4, 2),
    ("* * */32 * *", "day of month step 32 is too large", 6, 2),
    ("* * * */13 *", "month step 13 is too large", 8, 2),
    ("* * * * */8", "day of week step 8 is too large", 10, 1),
    ("* * * jan-dec/0 *", "month step 0", 14, 1),
    ("*/x * * * *", "minute step 'x' is not a whole number", 2, 1),
    ("*/ * * * *", "no step after '/'", 1, 1),
    ("*/5/2 * * * *", "more than one '/'", 3, 1),
    ("/5 * * * *", "no range before '/'", 0, 2),
    ("*5 * * * *", "minute element '*5'", 0, 2),
    ("* *-3 * * *", "hour element '*-3'", 2, 3),
    ("1,,2 * * * *", "empty list element", 2, 1),
    (",1 * * * *", "empty list element", 0, 1),
    ("1, * * * *", "empty list element", 1, 1),
    ("* * * * 1,", "day of week field has an empty list element", 9, 1),
    ("1- * * * *", "minute range '1-' is missing its end value", 0, 2),
    ("-5 * * * *", "minute range '-5' is missing its start value", 0, 2),
    ("* * * * 1-3-5", "more than one '-'", 11, 1),
    ("abc * * * *", "minute 'abc' is not a number", 0, 3),
    ("1.5 * * * *", "minute '1.5' is not a number", 0, 3),
    ("\u00b2 * * * *", "minute '\u00b2' is not a number", 0, 1),
    ("mon * * * *", "names are allowed only in the month and day-of-week fields", 0, 3),
    ("* * jan * *", "day of month 'jan' is not a number", 4, 3),
    ("* * * january *", "first three letters (jan-dec)", 6, 7),
    ("* * * * funday", "first three letters (sun-sat)", 8, 6),
    ("1" * 5000 + " * * * *", "minute value of 5000 digits is out of range 0-59", 0, 5000),
    ("*/" + "9" * 5000 + " * * * *", "minute step of 5000 digits is too large", 2, 5000),
    ("* * * * mon-fri5", "day of week 'fri5' is not a number or a day of week name", 12, 4),
    ("* * * * mon-dec", "day of week 'dec' is not a day of week name", 12, 3),
    ("  61 * * * *", "minute 61", 0, 2),  # offsets count from the stripped text
    ("* * * * * *", "6 fields", 10, 1),
    ("0 0 * * * *", "seconds fields are not supported", 10, 1),
    ("0 0 * * * * *", "7 fields", 10, 3),
    ("* * * *", "4 fields", 7, 1),
    ("*", "1 field,", 1, 1),
    ("", "empty", 0, 1),
    ("   ", "empty", 0, 1),
    ("@reboot", "no reboot to run at", 0, 7),
    ("@REBOOT", "'at:'", 0, 7),
    ("@foo", "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly", 0, 4),
    ("@", "macro '@' is unknown", 0, 1),
    ("@daily 5", "must stand alone", 7, 1),
    ("0 0 30 2 *", "never fires: day of month 30 does not exist in February", 4, 2),
    ("0 0 31 4,6 *", "never fires: day of month 31 does not exist in April or June", 4, 2),
    ("0 0 30,31 feb *", "never fires: days of month 30,31 do not exist", 4, 5),
    ("0 0 31 2,4,6,9,11 *", "April, June, September or November", 4, 2),
    ("0 0 31 4 */2", "never fires", 4, 2),
]


@pytest.mark.parametrize(("expr", "needle", "offset", "length"), ERROR_CASES)
def test_parse_errors_name_the_problem_and_point_at_it(expr: str, needle: str, offset: int,
                                                       length: int) -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpr.parse(expr)
    err = info.value
    message = str(err)
    assert needle in message
    assert message.endswith(".")
    assert message.count(". ") == 0  # one sentence
    assert (err.offset, err.length) == (offset, length)
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("expr", ["61 * * * *", "* * * * mon-sun", "0 0 30 2 *"])
def test_error_token_slice_is_the_culprit(expr: str) -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpr.parse(expr)
    culprit = expr[info.value.offset:info.value.offset + info.value.length]
    assert culprit in {"61", "mon-sun", "30"}
    assert repr(culprit) in str(info.value) or culprit in str(info.value)


def test_error_keeps_offset_through_pickle() -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpr.parse("* * * 13 *")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.offset, copy.length) == (
        str(info.value), info.value.offset, info.value.length)


@pytest.mark.parametrize("expr", [
    "0 0 29 2 *", "0 0 31 1-3 *", "0 0 30 2 mon", "0 0 31 4 1", "0 0 30 1,2 *",
    "0 0 */30 2 *",
])
def test_expressions_that_can_fire_are_accepted(expr: str) -> None:
    assert CronExpr.parse(expr).source == expr


def test_direct_construction_validates_sets() -> None:
    with pytest.raises(ValueError, match="minutes"):
        CronExpr("x", frozenset({60}), ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS,
                 False, False, False)
    with pytest.raises(ValueError, match="weekdays"):
        CronExpr("x", ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, frozenset(),
                 False, False, False)


def test_parsed_expressions_compare_by_value() -> None:
    a = CronExpr.parse("0 0 * * 7")
    b = CronExpr.parse("0 0 * * 0")
    assert a != b  # different sources
    assert CronExpr.parse("0 0 * * 7") == a
    assert hash(CronExpr.parse("0 0 * * 7")) == hash(a)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t*/,-0123456789abcdefjmnorstuyADJMS@x.", max_size=30))
def test_parse_either_succeeds_or_raises_pointing_inside(text: str) -> None:
    result = parse_or_error(text)
    if isinstance(result, CronSyntaxError):
        assert 0 <= result.offset <= len(text.strip())
        assert result.length >= 1
        assert result.offset + result.length <= max(len(text.strip()), 1) + 1
        assert str(result).endswith(".")
    else:
        assert result.minutes and result.hours and result.days
        assert result.months and result.weekdays


def parse_or_error(text: str) -> CronExpr | CronSyntaxError:
    try:
        return CronExpr.parse(text)
    except CronSyntaxError as err:
        return err


# --- day rule ----------------------------------------------------------------------------

DAY_RULE_CASES = [
    # both restricted: either matches
    ("30 4 1,15 * 5", "2026-05-01", True),   # 1st and Friday
    ("30 4 1,15 * 5", "2026-05-08", True),   # Friday only
    ("30 4 1,15 * 5", "2026-05-15", True),   # 15th and Friday
    ("30 4 1,15 * 5", "2026-06-01", True),   # 1st, a Monday
    ("30 4 1,15 * 5", "2026-06-15", True),   # 15th, a Monday
    ("30 4 1,15 * 5", "2026-05-02", False),  # Saturday the 2nd
    ("30 4 1,15 * 5", "2026-06-16", False),
    # one side '*': both must match
    ("0 0 1 * *", "2026-05-01", True),
    ("0 0 1 * *", "2026-05-02", False),
    ("0 0 * * 5", "2026-05-08", True),
    ("0 0 * * 5", "2026-05-09", False),
    # '*/2' starts with '*', so it does not count as a restriction: AND rule
    ("0 0 1-7 * */2", "2026-05-02", True),   # Saturday (6) in 1-7
    ("0 0 1-7 * */2", "2026-05-01", False),  # Friday (5)
    ("0 0 1-7 * */2", "2026-05-09", False),  # Saturday but the 9th
    ("0 0 */2 * 1", "2026-06-01", True),     # odd day, Monday
    ("0 0 */2 * 1", "2026-06-08", False),    # even day
    ("0 0 */2 * 1", "2026-06-03", False),    # odd day, Wednesday
    # month must always match
    ("0 0 1,15 jan 5", "2026-02-06", False),  # a Friday in February
    ("0 0 1,15 jan 5", "2026-01-02", True),   # a Friday in January
    ("0 0 29 2 *", "2028-02-29", True),
    ("0 0 * * 7", "2026-09-06", True),        # 7 is Sunday
]


@pytest.mark.parametrize(("expr", "day", "expected"), DAY_RULE_CASES)
def test_matches_day(expr: str, day: str, expected: bool) -> None:
    assert CronExpr.parse(expr).matches_day(date.fromisoformat(day)) is expected


def test_or_rule_fires_on_listed_days_and_every_friday() -> None:
    got = fires("30 4 1,15 * 5", "UTC", "2026-05-01T00:00", 6)
    assert got == [utc("2026-05-01T04:30"), utc("2026-05-08T04:30"),
                   utc("2026-05-15T04:30"), utc("2026-05-22T04:30"),
                   utc("2026-05-29T04:30"), utc("2026-06-01T04:30")]


# --- next_after ------------------------------------------------------------------------

NEXT_CASES = [
    # expr, zone, after (UTC), expected (UTC)
    ("0 0 1 * *", "UTC", "2026-12-31T12:00", "2027-01-01T00:00"),
    ("59 23 31 12 *", "UTC", "2026-12-31T23:59", "2027-12-31T23:59"),
    ("59 23 31 12 *", "UTC", "2026-12-31T23:58:59", "2026-12-31T23:59"),
    ("0 12 31 * *", "UTC", "2026-04-01T00:00", "2026-05-31T12:00"),
    ("0 0 29 2 *", "UTC", "2026-03-01T00:00", "2028-02-29T00:00"),
    ("0 0 29 2 *", "UTC", "2028-02-29T00:00", "2032-02-29T00:00"),
    ("0 0 29 2 *", "UTC", "2096-03-01T00:00", "2104-02-29T00:00"),  # 2100 is no leap year
    ("0 0 29 2 1", "UTC", "2026-02-28T00:00", "2027-02-01T00:00"),  # OR: Feb 29 or Mon in Feb
    ("0 0 29 2 1", "UTC", "2028-02-27T00:00", "2028-02-28T00:00"),  # a Monday
    ("0 0 29 2 1", "UTC", "2028-02-28T00:00", "2028-02-29T00:00"),  # the 29th, a Tuesday
    ("0 0 29 2 */7", "UTC", "2026-01-01T00:00", "2032-02-29T00:00"),  # AND: a Sunday Feb 29
    ("* * * * *", "UTC", "2026-01-01T00:00", "2026-01-01T00:01"),
    ("* * * * *", "UTC", "2026-01-01T00:00:00.000001", "2026-01-01T00:01"),
    ("* * * * *", "UTC", "2026-01-01T00:00:59.999999", "2026-01-01T00:01"),
    ("*/7 * * * *", "UTC", "2026-01-01T00:56", "2026-01-01T01:00"),
    ("0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00", "2026-01-02T00:00"),  # 09:00 JST
    ("0 9 * * *", "Asia/Tokyo", "2025-12-31T23:59:59", "2026-01-01T00:00"),
    ("0 0 * * *", "Asia/Tokyo", "2026-06-30T15:00", "2026-07-01T15:00"),
    ("0 0 1 1 *", "Asia/Tokyo", "2026-06-01T00:00", "2026-12-31T15:00"),
    ("30 2 * * *", "Europe/Berlin", "2026-07-01T00:00", "2026-07-01T00:30"),
    ("30 2 * * *", "Europe/Berlin", "2026-01-01T00:00", "2026-01-01T01:30"),
    ("0 9 * * mon-fri", "America/New_York", "2026-07-03T13:00", "2026-07-06T13:00"),
    ("0 0 * * *", "Australia/Lord_Howe", "2026-07-01T00:00", "2026-07-01T13:30"),
    ("@weekly", "UTC", "2026-09-01T00:00", "2026-09-06T00:00"),
    ("@yearly", "UTC", "2026-01-01T00:00", "2027-01-01T00:00"),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), NEXT_CASES)
def test_next_after(expr: str, zone: str, after: str, expected: str) -> None:
    got = CronExpr.parse(expr).next_after(utc(after), ZoneInfo(zone))
    assert got == utc(expected)
    assert got is not None
    assert got.tzinfo is TIMING_UTC
    assert got.microsecond == 0


def test_next_after_converts_aware_input_from_any_zone() -> None:
    e = CronExpr.parse("0 12 * * *")
    after = datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))  # 11:00Z
    assert e.next_after(after, ZoneInfo("UTC")) == utc("2026-01-01T12:00")


def test_next_after_rejects_naive() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronExpr.parse("* * * * *").next_after(datetime(2026, 1, 1), ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="aware"):
        CronTiming(CronExpr.parse("* * * * *"), ZoneInfo("UTC")).next_after(
            datetime(2026, 1, 1))


def test_next_after_runs_out_at_the_end_of_the_calendar() -> None:
    e = CronExpr.parse("0 0 1 1 *")
    assert e.next_after(utc("9999-06-01T00:00"), ZoneInfo("UTC")) is None
    assert e.next_after(utc("9998-06-01T00:00"), ZoneInfo("UTC")) == utc("9999-01-01T00:00")


def test_fires_after_matches_brute_force_over_a_month() -> None:
    expr = "*/13 3-5,22 1,15 * wed"
    e = CronExpr.parse(expr)
    start, end = utc("2026-03-01T00:00"), utc("2026-04-01T00:00")
    got = []
    for t in fires_after(CronTiming(e, ZoneInfo("UTC")), start):
        if t > end:
            break
        got.append(t)
    expected = []
    t = start + timedelta(minutes=1)
    while t <= end:
        if (t.minute in e.minutes and t.hour in e.hours
                and (t.day in {1, 15} or t.isoweekday() == 3)):
            expected.append(t)
        t += timedelta(minutes=1)
    assert got == expected
    assert len(got) > 50


# --- CronTiming windows -------------------------------------------------------------------

def test_cron_timing_starts_is_inclusive() -> None:
    timing = CronTiming(CronExpr.parse("0 * * * *"), ZoneInfo("UTC"),
                        starts=utc("2026-01-01T05:00"))
    assert timing.next_after(utc("2025-06-01T00:00")) == utc("2026-01-01T05:00")
    assert timing.next_after(utc("2026-01-01T05:00")) == utc("2026-01-01T06:00")


def test_cron_timing_starts_between_fires() -> None:
    timing = CronTiming(CronExpr.parse("0 * * * *"), ZoneInfo("UTC"),
                        starts=utc("2026-01-01T05:00:00.5"))
    assert timing.next_after(utc("2025-06-01T00:00")) == utc("2026-01-01T06:00")


def test_cron_timing_ends_is_inclusive() -> None:
    timing = CronTiming(CronExpr.parse("0 * * * *"), ZoneInfo("UTC"),
                        ends=utc("2026-01-01T05:00"))
    assert timing.next_after(utc("2026-01-01T04:00")) == utc("2026-01-01T05:00")
    assert timing.next_after(utc("2026-01-01T05:00")) is None
    assert timing.next_after(utc("2027-01-01T00:00")) is None


def test_cron_timing_window_in_other_offsets() -> None:
    plus2 = timezone(timedelta(hours=2))
    timing = CronTiming(CronExpr.parse("30 * * * *"), ZoneInfo("Europe/Berlin"),
                        starts=datetime(2026, 6, 1, 12, 0, tzinfo=plus2),   # 10:00Z
                        ends=datetime(2026, 6, 1, 14, 30, tzinfo=plus2))    # 12:30Z
    got = list(fires_after(timing, utc("2026-01-01T00:00"), utc("2027-01-01T00:00")))
    assert got == [utc("2026-06-01T10:30"), utc("2026-06-01T11:30"), utc("2026-06-01T12:30")]


def test_cron_timing_rejects_naive_window() -> None:
    with pytest.raises(ValueError, match="starts"):
        CronTiming(CronExpr.parse("* * * * *"), ZoneInfo("UTC"), starts=datetime(2026, 1, 1))


# --- EveryTiming, AtTiming, fires_after -----------------------------------------------------

def test_every_anchored_at_epoch() -> None:
    timing = EveryTiming(timedelta(minutes=90), EPOCH)
    # 2026-01-01 is 20454 days after the epoch: 20454 * 16 whole 90-minute steps.
    assert timing.next_after(utc("2026-01-01T00:00")) == utc("2026-01-01T01:30")
    assert timing.next_after(utc("2025-12-31T23:59:59")) == utc("2026-01-01T00:00")


def test_every_anchored_at_starts_includes_starts() -> None:
    starts = utc("2026-01-01T00:10")
    timing = EveryTiming(timedelta(hours=1), starts, starts=starts)
    assert timing.next_after(utc("2025-12-31T00:00")) == starts
    assert timing.next_after(starts) == utc("2026-01-01T01:10")
    assert timing.next_after(utc("2026-01-02T03:10:00.000001")) == utc("2026-01-02T04:10")


def test_every_with_starts_never_goes_before_anchor() -> None:
    timing = EveryTiming(timedelta(hours=1), utc("2026-01-01T05:00"),
                         starts=utc("2026-01-01T00:00"))
    assert timing.next_after(utc("2025-12-31T00:00")) == utc("2026-01-01T05:00")


def test_every_without_starts_extends_before_anchor() -> None:
    timing = EveryTiming(timedelta(hours=1), utc("2026-01-01T05:20"))
    assert timing.next_after(utc("2026-01-01T00:00")) == utc("2026-01-01T00:20")


def test_every_starts_after_anchor_keeps_phase() -> None:
    timing = EveryTiming(timedelta(minutes=45), EPOCH, starts=utc("2026-01-01T00:10"))
    first = timing.next_after(utc("2025-01-01T00:00"))
    assert first == utc("2026-01-01T00:45")  # 00:00 is on the grid, 00:10 is not
    assert first is not None
    assert (first - EPOCH) % timedelta(minutes=45) == timedelta(0)


def test_every_ends_inclusive() -> None:
    timing = EveryTiming(timedelta(minutes=30), EPOCH, ends=utc("2026-01-01T01:00"))
    assert timing.next_after(utc("2026-01-01T00:30")) == utc("2026-01-01T01:00")
    assert timing.next_after(utc("2026-01-01T01:00")) is None


@settings(max_examples=200, deadline=None)
@given(
    step_s=st.integers(1, 10 * 86400),
    anchor_s=st.integers(0, 2_000_000_000),
    offsets=st.lists(st.integers(0, 400 * 86400), min_size=2, max_size=5),
)
def test_every_restart_from_any_point_gives_the_same_grid(step_s: int, anchor_s: int,
                                                          offsets: list[int]) -> None:
    interval = timedelta(seconds=step_s)
    anchor = EPOCH + timedelta(seconds=anchor_s)
    timing = EveryTiming(interval, anchor, starts=anchor)
    base = anchor - timedelta(days=1)
    for off in offsets:
        point = base + timedelta(seconds=off, microseconds=off % 7)
        t = timing.next_after(point)
        assert t is not None
        assert t > point
        assert t >= anchor
        assert (t - anchor) % interval == timedelta(0)
        assert t - interval <= point or t - interval < anchor


def test_every_interval_is_elapsed_time_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    anchor = datetime(2026, 3, 28, 12, 0, tzinfo=berlin)  # 11:00Z, CET
    timing = EveryTiming(timedelta(days=1), anchor, starts=anchor)
    assert timing.anchor == utc("2026-03-28T11:00")
    assert timing.anchor.tzinfo is TIMING_UTC
    # 24 h later is 13:00 CEST: the grid does not follow the wall clock.
    assert timing.next_after(utc("2026-03-28T11:00")) == utc("2026-03-29T11:00")
    assert timing.next_after(datetime(2026, 3, 29, 13, 30, tzinfo=berlin)) == utc(
        "2026-03-30T11:00")


def test_windows_are_stored_in_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    timing = CronTiming(CronExpr.parse("0 0 * * *"), berlin,
                        starts=datetime(2026, 7, 1, tzinfo=berlin),
                        ends=datetime(2026, 7, 3, tzinfo=berlin))
    assert (timing.starts, timing.ends) == (utc("2026-06-30T22:00"), utc("2026-07-02T22:00"))
    assert timing.starts is not None
    assert timing.starts.tzinfo is TIMING_UTC
    got = list(fires_after(timing, utc("2026-01-01T00:00"), utc("2027-01-01T00:00")))
    assert got == [utc("2026-06-30T22:00"), utc("2026-07-01T22:00"), utc("2026-07-02T22:00")]


def test_every_validates() -> None:
    with pytest.raises(ValueError, match="positive"):
        EveryTiming(timedelta(0), EPOCH)
    with pytest.raises(ValueError, match="anchor"):
        EveryTiming(timedelta(hours=1), datetime(2026, 1, 1))


def test_at_timing() -> None:
    instant = datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    timing = AtTiming(instant)
    got = timing.next_after(utc("2026-05-01T11:59:59"))
    assert got == utc("2026-05-01T12:00")
    assert got is not None
    assert got.tzinfo is TIMING_UTC
    assert timing.next_after(utc("2026-05-01T12:00")) is None
    assert timing.next_after(utc("2026-05-02T00:00")) is None
    with pytest.raises(ValueError, match="instant"):
        AtTiming(datetime(2026, 5, 1))


def test_timings_satisfy_the_protocol() -> None:
    timings: list[Timing] = [
        CronTiming(CronExpr.parse("@daily"), ZoneInfo("UTC")),
        EveryTiming(timedelta(hours=1), EPOCH),
        AtTiming(EPOCH),
    ]
    assert all(isinstance(t, Timing) for t in timings)


def test_fires_after_is_half_open() -> None:
    timing = CronTiming(CronExpr.parse("0 * * * *"), ZoneInfo("UTC"))
    got = list(fires_after(timing, utc("2026-01-01T00:00"), utc("2026-01-01T03:00")))
    assert got == [utc("2026-01-01T01:00"), utc("2026-01-01T02:00"), utc("2026-01-01T03:00")]
    assert list(fires_after(timing, utc("2026-01-01T03:00"), utc("2026-01-01T03:00"))) == []
    assert list(fires_after(timing, utc("2026-01-01T03:30"), utc("2026-01-01T03:59"))) == []


def test_fires_after_one_off() -> None:
    timing = AtTiming(utc("2026-01-01T10:00"))
    assert list(fires_after(timing, utc("2026-01-01T00:00"), utc("2026-01-02T00:00"))) == [
        utc("2026-01-01T10:00")]
    assert list(fires_after(timing, utc("2026-01-01T00:00"), utc("2026-01-01T09:59"))) == []
    # Unbounded: the walk ends when the timing has no more fires.
    assert list(fires_after(timing, utc("2026-01-01T00:00"))) == [utc("2026-01-01T10:00")]
    assert list(fires_after(timing, utc("2026-01-01T10:00"))) == []
    with pytest.raises(ValueError, match="until"):
        list(fires_after(timing, utc("2026-01-01T00:00"), datetime(2026, 1, 2)))


# --- jitter ------------------------------------------------------------------------------

NOMINAL = utc("2026-01-01T09:00")
TEN_MINUTES = timedelta(minutes=10)


def test_jitter_is_pinned_across_processes_and_releases() -> None:
    # A changed hash scheme would reshuffle every user's send time: keep this value.
    assert jitter_delay("sched-1", "user-1", NOMINAL, TEN_MINUTES) == timedelta(
        seconds=308, milliseconds=179)


def test_jitter_is_deterministic_and_zone_independent() -> None:
    a = jitter_delay("s", "u", NOMINAL, TEN_MINUTES)
    b = jitter_delay("s", "u", NOMINAL.astimezone(ZoneInfo("Asia/Tokyo")), TEN_MINUTES)
    assert a == b == jitter_delay("s", "u", NOMINAL, TEN_MINUTES)


def test_jitter_range_spread_and_granularity() -> None:
    delays = [jitter_delay("sched", f"user-{i}", NOMINAL, TEN_MINUTES) for i in range(2000)]
    assert all(timedelta(0) <= d < TEN_MINUTES for d in delays)
    assert all(d % timedelta(milliseconds=1) == timedelta(0) for d in delays)
    assert min(delays) < timedelta(seconds=30)
    assert max(delays) > timedelta(minutes=9, seconds=30)
    assert len(set(delays)) > 1900
    # Each minute of the range gets a fair share (expected 200 per minute).
    per_minute = [0] * 10
    for d in delays:
        per_minute[d // timedelta(minutes=1)] += 1
    assert all(120 < n < 280 for n in per_minute)


def test_jitter_differs_between_users_schedules_and_times() -> None:
    base = jitter_delay("s", "u1", NOMINAL, TEN_MINUTES)
    assert jitter_delay("s", "u2", NOMINAL, TEN_MINUTES) != base
    assert jitter_delay("s2", "u1", NOMINAL, TEN_MINUTES) != base
    assert jitter_delay("s", "u1", NOMINAL + timedelta(days=1), TEN_MINUTES) != base
    # Field boundaries are unambiguous.
    assert jitter_delay("ab", "c", NOMINAL, TEN_MINUTES) != jitter_delay(
        "a", "bc", NOMINAL, TEN_MINUTES)


def test_jitter_zero_and_small() -> None:
    assert jitter_delay("s", "u", NOMINAL, timedelta(0)) == timedelta(0)
    assert jitter_delay("s", "u", NOMINAL, timedelta(microseconds=999)) == timedelta(0)
    assert jitter_delay("s", "u", NOMINAL, timedelta(milliseconds=1)) == timedelta(0)
    with pytest.raises(ValueError, match="negative"):
        jitter_delay("s", "u", NOMINAL, timedelta(seconds=-1))
    with pytest.raises(ValueError, match="nominal"):
        jitter_delay("s", "u", datetime(2026, 1, 1), TEN_MINUTES)


# --- resolve_wall --------------------------------------------------------------------------

RESOLVE_CASES = [
    # zone, naive wall, expected UTC
    ("UTC", "2026-03-29T02:30", "2026-03-29T02:30"),
    ("Asia/Tokyo", "2026-03-29T02:30", "2026-03-28T17:30"),
    ("Europe/Berlin", "2026-06-01T12:00", "2026-06-01T10:00"),   # unique, CEST
    ("Europe/Berlin", "2026-03-29T02:30", "2026-03-29T01:00"),   # gap -> 03:00 CEST
    ("Europe/Berlin", "2026-03-29T02:00", "2026-03-29T01:00"),   # gap start
    ("Europe/Berlin", "2026-03-29T03:00", "2026-03-29T01:00"),   # first wall after the gap
    ("Europe/Berlin", "2026-10-25T02:30", "2026-10-25T00:30"),   # overlap -> CEST
    ("America/New_York", "2026-01-15T08:00", "2026-01-15T13:00"),
    ("America/New_York", "2026-03-08T02:30", "2026-03-08T07:00"),  # gap -> 03:00 EDT
    ("America/New_York", "2026-11-01T01:30", "2026-11-01T05:30"),  # overlap -> EDT
    ("Australia/Lord_Howe", "2026-07-01T12:00", "2026-07-01T01:30"),  # +10:30
    ("Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-03T15:30"),  # gap -> 02:30 +11
    ("Australia/Lord_Howe", "2026-04-05T01:45", "2026-04-04T14:45"),  # overlap -> +11
    ("America/Santiago", "2026-09-06T00:30", "2026-09-06T04:00"),  # gap -> 01:00 -03
    ("America/Santiago", "2026-04-04T23:30", "2026-04-05T02:30"),  # overlap -> -03
    ("America/Santiago", "2026-04-05T00:00", "2026-04-05T04:00"),  # unique, -04
]


@pytest.mark.parametrize(("zone", "wall", "expected"), RESOLVE_CASES)
def test_resolve_wall(zone: str, wall: str, expected: str) -> None:
    got = resolve_wall(datetime.fromisoformat(wall), ZoneInfo(zone))
    assert got == utc(expected)
    assert got.tzinfo is TIMING_UTC


def test_resolve_wall_keeps_sub_minute_fields_and_rejects_aware() -> None:
    wall = datetime(2026, 6, 1, 12, 0, 5, 250)
    assert resolve_wall(wall, ZoneInfo("Europe/Berlin")) == datetime(
        2026, 6, 1, 10, 0, 5, 250, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        resolve_wall(utc("2026-06-01T12:00"), ZoneInfo("Europe/Berlin"))


# --- sanity: the fast paths stay consistent over many calls (no time is measured) -----------

def test_many_calls_stay_consistent() -> None:
    exprs = ["*/5 * * * *", "0 9 * * mon-fri", "30 4 1,15 * 5", "0 0 1 * *", "0 0 29 2 *",
             "15 2 * * *", "@hourly", "0 */6 * * *"]
    zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
             "UTC", "Asia/Tokyo"]
    calls = 0
    for expr in exprs:
        for zone in zones:
            timing = CronTiming(CronExpr.parse(expr), ZoneInfo(zone))
            t = utc("2026-01-01T00:00")
            for _ in range(25):
                nxt = timing.next_after(t)
                assert nxt is not None
                assert nxt > t
                assert timing.next_after(nxt - timedelta(seconds=1)) == nxt
                t = nxt
                calls += 1
    assert calls == len(exprs) * len(zones) * 25
