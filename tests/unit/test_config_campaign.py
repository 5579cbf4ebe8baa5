"""The campaign keys of the schedule file: quiet hours, skips, caps and opt-outs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import date, time
from pathlib import Path

import jsonschema
import pytest

from eventcron import config
from eventcron.config.audience import file_stamp
from eventcron.config.model import Cap, QuietHours, Skip
from eventcron.config.rules import (
    MAX_REGION_VALUES,
    MAX_SKIP_DATES,
    parse_cap,
    parse_clock,
    parse_dates,
)
from eventcron.config.schema import schema
from eventcron.config.suppress import read_optouts
from tests.unit.configs import problems_of, write

ROOT = Path(__file__).resolve().parents[2]


def one_problem(path: Path) -> str:
    found = problems_of(path)
    assert len(found) == 1, "\n".join(found)
    return found[0].removeprefix(f"{path}:")


def schedule_file(tmp_path: Path, keys: str, top: str = "", users: str = "[u1]") -> Path:
    """A file with one schedule carrying ``keys`` (indented under it) from line 7 on."""
    body = textwrap.indent(textwrap.dedent(keys), "    ")
    return write(tmp_path, f"version: 1\n{textwrap.dedent(top)}schedules:\n  - id: s\n"
                 f"    event_type: a:b\n    cron: '0 9 * * *'\n    users: {users}\n{body}")


# --- every key parsed ------------------------------------------------------------------------

def test_every_campaign_key_is_read_with_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text("app_user_id,reason\nu2,asked\nu3,bounced\n")
    path = write(tmp_path, """\
        version: 1
        delivery:
          quiet_hours: {from: "21:00", to: "08:00"}
        suppress:
          file: optouts.csv
        limits:
          per_user: 2/day
        schedules:
          - {id: inherits, event_type: a:b, cron: "0 9 * * *", users: [u1]}
          - id: own
            event_type: a:b
            cron: "0 9 * * *"
            users: [u1]
            quiet_hours: {from: "12:00", to: "13:30"}
            skip:
              dates: [2026-12-24, "2026-12-31..2027-01-02", 2026-12-24]
              holidays: DE-BY
            limits: exempt
          - {id: loud, event_type: a:b, cron: "0 9 * * *", users: [u1], quiet_hours: none}
        """)
    cfg = config.load(path)
    night = QuietHours(time(21), time(8))
    assert cfg.delivery.quiet_hours == night
    assert night.describe() == "21:00-08:00"
    inherits, own, loud = cfg.schedules
    assert inherits.quiet_hours == night
    assert (inherits.skip, inherits.exempt) == (Skip(), False)
    assert not inherits.skip
    assert own.quiet_hours == QuietHours(time(12), time(13, 30))
    assert own.skip == Skip(frozenset({date(2026, 12, 24), date(2026, 12, 31), date(2027, 1, 1),
                                       date(2027, 1, 2)}), "DE-BY", None)
    assert own.exempt
    assert loud.quiet_hours is None
    assert cfg.per_user == Cap(2, "day")
    assert cfg.suppress is not None
    assert cfg.suppress.file == tmp_path / "optouts.csv"
    assert cfg.suppress.file.is_absolute()
    assert cfg.suppress.users == {"u2", "u3"}
    assert cfg.suppress.stamp == file_stamp(tmp_path / "optouts.csv")


def test_a_file_without_the_keys_has_no_rules(tmp_path: Path) -> None:
    cfg = config.load(schedule_file(tmp_path, ""))
    assert cfg.delivery.quiet_hours is None
    assert (cfg.suppress, cfg.per_user) == (None, None)
    (s,) = cfg.schedules
    assert (s.quiet_hours, s.skip, s.exempt) == (None, Skip(), False)


def test_delivery_quiet_hours_none_gives_no_default(tmp_path: Path) -> None:
    cfg = config.load(schedule_file(tmp_path, "", top="delivery: {quiet_hours: none}\n"))
    assert cfg.delivery.quiet_hours is None
    assert cfg.schedules[0].quiet_hours is None


def test_a_schedules_own_window_needs_no_default(tmp_path: Path) -> None:
    cfg = config.load(schedule_file(tmp_path, "quiet_hours: {from: '23:59', to: '00:00'}"))
    assert cfg.schedules[0].quiet_hours == QuietHours(time(23, 59), time(0))


def test_holidays_from_a_user_column(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(
        "app_user_id,country\nu1,DE\nu2, DE-BY\nu3,\nu4,US-CA\n")
    path = write(tmp_path, """\
        version: 1
        audiences:
          people: {file: people.csv}
        schedules:
          - id: s
            event_type: a:b
            cron: "0 9 * * *"
            audience: people
            skip: {holidays: user.country}
        """)
    (s,) = config.load(path).schedules
    assert s.skip == Skip(frozenset(), None, "country")


def test_an_empty_skip_is_no_skip(tmp_path: Path) -> None:
    cfg = config.load(schedule_file(tmp_path, "skip: {}"))
    assert cfg.schedules[0].skip == Skip()


# --- the pure parsers ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("00:00", time(0)), ("23:59", time(23, 59)), (" 08:30 ", time(8, 30))])
def test_clock_times(text: str, expected: time) -> None:
    assert parse_clock(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("24:00", "'24:00' is not a time of day from 00:00 to 23:59 (write 00:00 for midnight)."),
    ("12:60", "'12:60' is not a time of day from 00:00 to 23:59."),
    ("8:00", "'8:00': write the hour with two digits, '08:00'."),
    ("9pm", "'9pm' is not a time of day; write it as HH:MM, such as 21:00."),
    ("21:00:00", "'21:00:00' is not a time of day"),
])
def test_clock_times_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_clock(text)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("text", "expected"), [
    ("1/day", Cap(1, "day")), ("3/week", Cap(3, "week")), ("2/h", Cap(2, "h")),
    (" 10 / day ", Cap(10, "day")), ("1000/week", Cap(1000, "week"))])
def test_caps(text: str, expected: Cap) -> None:
    assert parse_cap(text) == expected
    assert expected.describe() == text.replace(" ", "")


@pytest.mark.parametrize(("text", "message"), [
    ("1/d", "'1/d' has the unit 'd' (did you mean '1/day'?); the unit must be h, day or week."),
    ("2/hours", "(did you mean '2/h'?)"),
    ("1/Day", "(did you mean '1/day'?)"),
    ("3/wk", "(did you mean '3/week'?)"),
    ("1/month", "'1/month' has the unit 'month'; the unit must be h, day or week."),
    ("daily", "'daily' is not a cap (did you mean '1/day'?)"),
    ("weekly", "(did you mean '1/week'?)"),
    ("3", "'3' has no unit (did you mean '3/day'?)"),
    ("1 per day", "'1 per day' is not a cap (did you mean '1/day'?)"),
    ("0/day", "the count must be a whole number of at least 1, not '0'"),
    ("1.5/day", "the count must be a whole number of at least 1, not '1.5'"),
    ("-1/day", "not '-1'"),
    ("1001/day", "the count may be at most 1,000."),
    ("lots", "'lots' is not a cap; write it as N/unit with the unit h, day or week"),
])
def test_caps_refused_with_a_suggestion(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cap(text)


@pytest.mark.parametrize(("text", "first", "last"), [
    ("2026-12-24", date(2026, 12, 24), date(2026, 12, 24)),
    ("2026-12-31..2027-01-01", date(2026, 12, 31), date(2027, 1, 1)),
    ("2026-12-24 .. 2026-12-24", date(2026, 12, 24), date(2026, 12, 24)),
    ("2028-01-01..2028-12-31", date(2028, 1, 1), date(2028, 12, 31)),  # 366 days: allowed
])
def test_dates_and_ranges(text: str, first: date, last: date) -> None:
    assert parse_dates(text) == (first, last)


@pytest.mark.parametrize(("text", "message"), [
    ("2027-01-01..2026-12-31", "the range '2027-01-01..2026-12-31' ends before it starts;"
                               " write 2026-12-31..2027-01-01."),
    ("2026-01-01..2027-01-02", "covers 367 days; a range may cover at most 366"),
    ("2026-02-30", "'2026-02-30' is not a date: day is out of range for month."),
    ("Dec 24", "'Dec 24' is not a date; write YYYY-MM-DD such as 2026-12-24"),
    ("20261224", "'20261224' is not a date"),
    ("2026-12-24..", "'' is not a date"),
])
def test_dates_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_dates(text)


# --- every error, where it is ----------------------------------------------------------------

@pytest.mark.parametrize(("keys", "where", "message"), [
    ("quiet_hours: {from: '9pm', to: '08:00'}", "7:25:",
     "schedule 's': quiet_hours.from: '9pm' is not a time of day; write it as HH:MM"),
    ("quiet_hours: {from: '21:00', to: '24:00'}", "7:38:",
     "quiet_hours.to: '24:00' is not a time of day from 00:00 to 23:59 (write 00:00"),
    ("quiet_hours: {from: '08:00', to: '08:00'}", "7:38:",
     "schedule 's': quiet_hours: from and to are both 08:00, which leaves no window; write"
     " none to send at any hour."),
    ("quiet_hours: {from: '21:00'}", "7:18:",
     "schedule 's': quiet_hours needs both 'from' and 'to'; it has no 'to'."),
    ("quiet_hours: {from: '21:00', to: '08:00', form: x}", "7:47:",
     "unknown key 'form' in schedule 's': quiet_hours (did you mean 'from'?)."),
    ("quiet_hours: 21:00-08:00", "7:18:",
     "schedule 's': quiet_hours must be a mapping: write {from: \"21:00\", to: \"08:00\"}."),
    ("quiet_hours: off", "7:18:", "quiet_hours must be a mapping such as {from: \"21:00\", to:"
                                  " \"08:00\"}, or none, not 'off'."),
    ("quiet_hours:", "7:17:", "quiet_hours has no value; write {from: \"21:00\", to:"),
    ("limits: exempted", "7:13:",
     "schedule 's': limits must be 'exempt' (neither counted nor capped), not 'exempted'."),
    ("limits: {per_user: 2/day}", "7:13:",
     "The cap itself is set once, at the top: limits: {per_user: 1/day}."),
    ("skip: {holiday: DE}", "7:12:",
     "unknown key 'holiday' in schedule 's': skip (did you mean 'holidays'?)."),
    ("skip: {dates: 2026-12-24}", "7:19:",
     "schedule 's': skip.dates must be a list of dates and ranges such as [2026-12-24,"),
    ("skip: {dates: [2026-12-24, 2027-02-29]}", "7:32:",
     "schedule 's': skip.dates: '2027-02-29' is not a date: day is out of range for month."),
    ("skip: {dates: ['2027-01-02..2027-01-01']}", "7:20:", "ends before it starts"),
    ("skip: {dates: [2026-01-01..2027-12-31]}", "7:20:",
     "covers 730 days; a range may cover at most 366, so write one range per year."),
    ("skip: {holidays: XX}", "7:22:",
     "schedule 's': skip.holidays: unknown country 'XX'; use an ISO 3166 code such as 'DE',"),
    ("skip: {holidays: de}", "7:22:", "unknown country 'de' (did you mean 'DE'?)"),
    ("skip: {holidays: Germany}", "7:22:", "unknown country 'Germany' (did you mean 'DE'?)"),
    ("skip: {holidays: DE-XY}", "7:22:", "unknown subdivision 'XY' of DE; DE has BB, BE,"),
    ("skip: {holidays: DE-by}", "7:22:", "unknown subdivision 'by' of DE (did you mean 'BY'?)"),
    ("skip: {holidays: user.country}", "7:22:",
     "user.country names the column 'country', which this schedule's users do not have"
     " (it has no columns besides app_user_id and timezone)."),
    ("skip: {holidays: user.timezone}", "7:22:",
     "user.timezone holds time zones, not regions; name a column of ISO 3166 codes"),
])
def test_each_schedule_mistake_is_located(tmp_path: Path, keys: str, where: str,
                                          message: str) -> None:
    problem = one_problem(schedule_file(tmp_path, keys))
    assert problem.startswith(where), problem
    assert message in problem, problem


@pytest.mark.parametrize(("top", "where", "message"), [
    ("delivery:\n  quiet_hours: {from: '7:00', to: '08:00'}\n", "3:23:",
     "delivery.quiet_hours.from: '7:00': write the hour with two digits, '07:00'."),
    ("delivery:\n  quiet_hours: {from: '08:00', to: '08:00'}\n", "3:36:",
     "delivery.quiet_hours: from and to are both 08:00"),
    ("limits:\n  per_user: 1/d\n", "3:13:",
     "limits.per_user: '1/d' has the unit 'd' (did you mean '1/day'?); the unit must be h,"
     " day or week."),
    ("limits:\n  per_user: daily\n", "3:13:",
     "limits.per_user: 'daily' is not a cap (did you mean '1/day'?)"),
    ("limits:\n  per_user: 0/day\n", "3:13:", "the count must be a whole number of at least 1"),
    ("limits:\n  per_users: 1/day\n", "3:3:",
     "unknown key 'per_users' in limits (did you mean 'per_user'?)."),
    ("limits: 1/day\n", "2:9:", "limits must be a mapping, not a string."),
    ("suppress: {}\n", "2:11:", "suppress needs 'file': the CSV file of users who opted out."),
])
def test_each_top_level_mistake_is_located(tmp_path: Path, top: str, where: str,
                                           message: str) -> None:
    problem = one_problem(schedule_file(tmp_path, "", top=top))
    assert problem.startswith(where), problem
    assert message in problem, problem


def test_unknown_keys_are_reported_beside_what_is_missing(tmp_path: Path) -> None:
    path = schedule_file(tmp_path, "", top="delivery:\n  quiet_hours: {start: '21:00', end:"
                         " '08:00'}\nsuppress:\n  files: x.csv\n")
    assert [p.removeprefix(f"{path}:") for p in problems_of(path)] == [
        "3:16: delivery.quiet_hours needs both 'from' and 'to'; it has neither.",
        "3:17: unknown key 'start' in delivery.quiet_hours.",
        "3:33: unknown key 'end' in delivery.quiet_hours.",
        "5:3: unknown key 'files' in suppress (did you mean 'file'?).",
        "5:3: suppress needs 'file': the CSV file of users who opted out.",
    ]


def test_several_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    path = schedule_file(tmp_path, """\
        quiet_hours: {from: '25:00', to: '08:00'}
        skip: {dates: [2026-13-01], holidays: XX}
        limits: capped
        """, top="limits: {per_user: 1/d}\n")
    found = problems_of(path)
    assert [p.split(": ")[0].removeprefix(f"{path}:") for p in found] == [
        "2:20", "8:25", "9:20", "9:43", "10:13"]


def test_skip_dates_are_bounded_in_total(tmp_path: Path) -> None:
    years = ", ".join(f"'{y}-01-01..{y}-12-31'" for y in range(2030, 2042))
    problem = one_problem(schedule_file(tmp_path, f"skip: {{dates: [{years}]}}"))
    assert f"skip.dates covers more than {MAX_SKIP_DATES:,} days" in problem


# --- holidays from a user column: the region values ------------------------------------------

def test_inline_users_region_values_are_checked_each_where_they_are(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        version: 1
        audiences:
          team:
            users:
              - {id: u1, country: DE}
              - {id: u2, country: Germany}
              - {id: u3}
              - {id: u4, country: DE-XX}
        schedules:
          - {id: a, event_type: a:b, cron: "0 9 * * *", audience: team,
             skip: {holidays: user.country}}
          - {id: b, event_type: a:b, cron: "0 9 * * *", audience: team,
             skip: {holidays: user.country}}
        """)
    found = [p.removeprefix(f"{path}:") for p in problems_of(path)]
    # Once per audience column, however many schedules use it, at each user's own value.
    assert found == [
        "6:27: schedule 'a': skip.holidays: user 'u2' has the country 'Germany': unknown"
        " country 'Germany' (did you mean 'DE'?); use an ISO 3166 code such as 'DE',"
        " optionally with a subdivision ('DE-BY').",
        "8:27: schedule 'a': skip.holidays: user 'u4' has the country 'DE-XX': unknown"
        " subdivision 'XX' of DE; DE has BB, BE, BW, BY, HB, HE, HH, MV, NI, NW, RP, SH and 5"
        " more.",
    ]


def test_a_schedules_own_users_are_checked_too(tmp_path: Path) -> None:
    path = schedule_file(tmp_path, "skip: {holidays: user.land}",
                         users="[{id: u1, land: FR}, {id: u2, land: ZZ}]")
    assert one_problem(path).startswith("6:48: schedule 's': skip.holidays: user 'u2' has the"
                                        " land 'ZZ': unknown country 'ZZ'")


def test_a_missing_column_gets_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("app_user_id,country,plan\nu1,DE,pro\n")
    path = write(tmp_path, """\
        version: 1
        audiences:
          people: {file: people.csv}
        schedules:
          - {id: s, event_type: a:b, cron: "0 9 * * *", audience: people,
             skip: {holidays: user.contry}}
        """)
    assert one_problem(path) == (
        "6:23: schedule 's': skip.holidays: user.contry names the column 'contry', which"
        " audience 'people' does not have (did you mean 'country'?) (it has 'country' or"
        " 'plan').")


def csv_audience(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "people.csv").write_text(rows)
    return write(tmp_path, """\
        version: 1
        audiences:
          people: {file: people.csv}
        schedules:
          - {id: s, event_type: a:b, cron: "0 9 * * *", audience: people,
             skip: {holidays: user.country}}
          - {id: t, event_type: a:b, cron: "0 9 * * *", audience: people,
             skip: {holidays: user.country}}
        """)


def test_csv_region_values_are_reported_at_their_first_line(tmp_path: Path) -> None:
    path = csv_audience(tmp_path, "app_user_id,country\nu1,DE\nu2,XX\nu3,\nu4,XX\nu5,de\n"
                                  "u6,\"DE-BY\"\nu7,de\n")
    found = problems_of(path)
    csv_file = tmp_path / "people.csv"
    assert found == [
        f"{csv_file}:3: country 'XX': unknown country 'XX'; use an ISO 3166 code such as"
        " 'DE', optionally with a subdivision ('DE-BY').",
        f"{csv_file}:6: country 'de': unknown country 'de' (did you mean 'DE'?); use an ISO"
        " 3166 code such as 'DE', optionally with a subdivision ('DE-BY').",
        f"{path}:6:23: schedule 's': skip.holidays: the column 'country' of the CSV file has 2"
        " values that are not regions (listed with their own file and line).",
    ]


def test_a_column_of_too_many_values_is_no_region_column(tmp_path: Path) -> None:
    rows = "".join(f"u{i},DE-{i}\n" for i in range(MAX_REGION_VALUES + 5))
    path = csv_audience(tmp_path, "app_user_id,country\n" + rows)
    assert one_problem(path) == (
        f"6:23: schedule 's': skip.holidays: the column 'country' of {tmp_path / 'people.csv'}"
        " has more than 1,000 different values (one more on line 1,002); it does not look like"
        " a column of regions such as 'DE' or 'DE-BY'.")


def test_many_rows_of_few_regions_are_fine(tmp_path: Path) -> None:
    rows = "".join(f"u{i},{('DE', 'FR', 'US-CA', '')[i % 4]}\n" for i in range(5000))
    cfg = config.load(csv_audience(tmp_path, "app_user_id,country\n" + rows))
    assert cfg.schedules[0].skip.holidays_column == "country"


# --- the opt-out file ------------------------------------------------------------------------

def suppress_file(tmp_path: Path, name: str = "optouts.csv") -> Path:
    return schedule_file(tmp_path, "", top=f"suppress:\n  file: {name}\n")


def test_a_missing_optout_file_is_one_problem_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text("app_user_id\n")
    assert one_problem(suppress_file(tmp_path, "optout.csv")) == (
        f"3:9: suppress.file: {tmp_path / 'optout.csv'} does not exist (did you mean"
        " 'optouts.csv'?).")


@pytest.mark.parametrize(("beside", "named", "hint"), [
    ("optouts.csv", "opt-outs.csv", " (did you mean 'optouts.csv'?)"),
    ("optouts.csv", "optouts.txt", " (did you mean 'optouts.csv'?)"),
    ("customers.example.csv", "optouts.example.csv", ""),  # alike only in their ending
    ("optouts.example.csv", "optout.example.csv", " (did you mean 'optouts.example.csv'?)"),
])
def test_the_suggestion_compares_what_differs(tmp_path: Path, beside: str, named: str,
                                              hint: str) -> None:
    (tmp_path / beside).write_text("app_user_id\n")
    assert one_problem(suppress_file(tmp_path, named)) == (
        f"3:9: suppress.file: {tmp_path / named} does not exist{hint}.")


def test_a_missing_optout_file_without_a_near_name(tmp_path: Path) -> None:
    assert one_problem(suppress_file(tmp_path, "list.csv")) == (
        f"3:9: suppress.file: {tmp_path / 'list.csv'} does not exist.")
    assert one_problem(suppress_file(tmp_path, "gone/list.csv")) == (
        f"3:9: suppress.file: {tmp_path / 'gone/list.csv'} does not exist (nor does the folder"
        f" {tmp_path / 'gone'}).")


def test_an_unreadable_optout_file(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    assert one_problem(suppress_file(tmp_path, "folder.csv")) == (
        f"3:9: suppress.file: cannot read {tmp_path / 'folder.csv'}: Is a directory.")


def test_bad_optout_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text(
        "email,app_user_id\na@x,u1\nb@x, u2\n\nc@x\nd@x,\ne@x,u1\nf@x,u3,extra\n")
    path = suppress_file(tmp_path)
    csv_file = tmp_path / "optouts.csv"
    assert problems_of(path) == [
        f"{csv_file}:3: app_user_id ' u2' has leading or trailing whitespace; ids are taken"
        " exactly as written.",
        f"{csv_file}:5: the row has 1 fields but the header has 2.",
        f"{csv_file}:6: app_user_id is empty.",
        f"{csv_file}:8: the row has 3 fields but the header has 2.",
        f"{path}:3:9: suppress.file: the CSV file 'optouts.csv' has problems (listed with"
        " their own file and line).",
    ]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty; it needs a header row naming the app_user_id column."),
    (b"user_id,date\nu1,x\n", "the header has no 'app_user_id' column; it has 'user_id',"
                              " 'date' (is 'user_id' meant to be 'app_user_id'?)."),
    (b"u1\nu2\n", "the header has no 'app_user_id' column; it has 'u1'. The first row must"
                  " name the columns."),
    ("app_user_id\n".encode("utf-16"), "cannot read the header: invalid UTF-8 (byte 0xff)."
                                        " Save the file as CSV UTF-8."),
])
def test_optout_header_problems(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "optouts.csv").write_bytes(content)
    found = problems_of(suppress_file(tmp_path))
    assert found[0].startswith(f"{tmp_path / 'optouts.csv'}:1: {message}")
    assert len(found) == 2


def test_optouts_with_a_bom_crlf_duplicates_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"\xef\xbb\xbf app_user_id ,note\r\nu1,\"a, b\"\r\nu1,again\r\n"
                     b"\"u 2\",x\r\n\r\n")
    found = read_optouts(path)
    assert not found.problems
    assert found.users == {"u1", "u 2"}
    assert found.stamp == file_stamp(path)


def test_bytes_that_are_not_utf8_matter_only_in_the_id(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"app_user_id,name\nu1,J\xfcrgen\nu\xff2,x\nu3,y\n")
    found = read_optouts(path)
    assert [str(p) for p in found.problems.items] == [
        f"{path}:3: app_user_id is not valid UTF-8 (byte 0xff)."]
    assert found.users == {"u1", "u3"}


def test_read_optouts_raises_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_optouts(tmp_path / "none.csv")


def test_an_empty_list_with_a_header_is_fine(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text("app_user_id\n")
    cfg = config.load(suppress_file(tmp_path))
    assert cfg.suppress is not None
    assert cfg.suppress.users == frozenset()


# --- the schema and the example --------------------------------------------------------------

def test_the_schema_describes_every_campaign_key() -> None:
    top = schema()["properties"]
    item = top["schedules"]["items"]["properties"]
    described = [top["suppress"], top["suppress"]["properties"]["file"], top["limits"],
                 top["limits"]["properties"]["per_user"], top["delivery"]["properties"][
                     "quiet_hours"], item["quiet_hours"], item["skip"], item["limits"],
                 *item["skip"]["properties"].values(),
                 *item["quiet_hours"]["oneOf"][1]["properties"].values()]
    assert all(d.get("description") for d in described)
    assert top["delivery"]["properties"]["quiet_hours"]["default"] == "none"


@pytest.mark.parametrize(("doc", "valid"), [
    ({"delivery": {"quiet_hours": {"from": "21:00", "to": "08:00"}}}, True),
    ({"delivery": {"quiet_hours": "none"}}, True),
    ({"delivery": {"quiet_hours": {"from": "9:00", "to": "08:00"}}}, False),
    ({"delivery": {"quiet_hours": {"from": "21:00"}}}, False),
    ({"limits": {"per_user": "3/week"}}, True),
    ({"limits": {"per_user": "1/d"}}, False),
    ({"suppress": {"file": "x.csv"}}, True),
    ({"suppress": {}}, False),
    ({"schedules": [{"skip": {"dates": ["2026-12-24", "2026-12-31..2027-01-01"],
                              "holidays": "DE-BY"}, "limits": "exempt",
                     "quiet_hours": "none"}]}, True),
    ({"schedules": [{"skip": {"holidays": "user.country"}}]}, True),
    ({"schedules": [{"skip": {"dates": ["24.12.2026"]}}]}, False),
    ({"schedules": [{"limits": "capped"}]}, False),
])
def test_the_json_schema_agrees_on_the_new_keys(doc: dict[str, object], valid: bool) -> None:
    base: dict[str, object] = {"version": 1, "schedules": []}
    for s in doc.get("schedules", []):  # type: ignore[attr-defined]
        s.update({"id": "s", "event_type": "a:b", "cron": "0 9 * * *", "users": ["u"]})
    full = {**base, **doc}
    if valid:
        jsonschema.validate(full, schema())
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(full, schema())


def test_the_example_shows_every_rule_and_stays_quiet_about_expiry() -> None:
    cfg = config.load(ROOT / "schedules.example.yaml")
    assert cfg.suppress is not None and cfg.suppress.users
    assert cfg.per_user is not None
    by_id = {s.id: s for s in cfg.schedules}
    assert by_id["heartbeat"].quiet_hours is None and by_id["heartbeat"].exempt
    assert by_id["weekday-checkin"].skip.dates and by_id["weekday-checkin"].skip.holidays_column
    # The warning of campaign.warnings (a window longer than expires_after) never fires here.
    for s in cfg.schedules:
        if s.quiet_hours is not None:
            assert s.quiet_hours.length().total_seconds() < cfg.delivery.expires_after


# --- what validate imports -------------------------------------------------------------------

PROBE = """
import sys
from eventcron.cli import main
code = main(sys.argv[1:])
print("holidays:", "holidays" in sys.modules, "code:", code, file=sys.stderr)
"""


@pytest.mark.parametrize(("keys", "imported"), [("", False),
                                                ("skip: {holidays: DE}", True)])
def test_validate_loads_the_holiday_calendars_only_for_holidays(
        tmp_path: Path, keys: str, imported: bool) -> None:
    path = schedule_file(tmp_path, keys, top="delivery: {quiet_hours: {from: '21:00', to:"
                                             " '08:00'}}\nlimits: {per_user: 1/day}\n")
    result = subprocess.run([sys.executable, "-c", PROBE, "validate", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.stderr.strip().splitlines()[-1] == f"holidays: {imported} code: 0", (
        result.stderr)


def test_a_region_with_a_dash_and_no_subdivision_is_refused() -> None:
    from eventcron.timing.holidays import check_region

    assert check_region("US-") == ("'US-' has a '-' but no subdivision after it; write 'US'"
                                   " alone, or add the subdivision's code (as in 'DE-BY').")
    assert check_region("US") is None
