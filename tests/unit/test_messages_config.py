"""Messages about the schedule file and its CSV files, as a first-time user meets them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from eventcron import config
from eventcron.config.audience import RowReader, scan_csv
from eventcron.config.suppress import read_optouts
from eventcron.problems import InvalidInput, Problem
from tests.unit.configs import problems_of, write

QUOTE_HINT = ' Put cron expressions in quotes: cron: "*/5 * * * *".'


# --- an unquoted cron expression -------------------------------------------------------------

@pytest.mark.parametrize(("line", "where", "hint"), [
    ("    cron: */5 * * * *", "4:12", QUOTE_HINT),
    ("    cron: * * * * *", "4:12", ' Put cron expressions in quotes: cron: "* * * * *".'),
    ("    cron: @daily  # every day", "4:11", ' Put cron expressions in quotes: cron: "@daily".'),
    ("    {cron: */5 * * * *}", "4:13", QUOTE_HINT),
])
def test_an_unquoted_cron_expression_says_to_quote_it(tmp_path: Path, line: str, where: str,
                                                       hint: str) -> None:
    path = write(tmp_path, f"version: 1\nschedules:\n  - id: s\n{line}\n")
    (found,) = problems_of(path)
    assert found.startswith(f"{path}:{where}: YAML syntax error: ")
    assert found.endswith(hint)


def test_other_yaml_errors_get_no_cron_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nschedules:\n  - id: s\n    every: */5 * * * *\n")
    (found,) = problems_of(path)
    assert found.startswith(f"{path}:4:13: YAML syntax error: did not find expected")
    assert "quotes" not in found


# --- an unclosed quote in a CSV file ---------------------------------------------------------

def rows(first: int, last: int, zone: str = "UTC") -> str:
    return "".join(f"user_{n:05},{zone}\n" for n in range(first, last + 1))


def test_an_unclosed_quote_is_reported_where_it_opens_and_reading_goes_on(
        tmp_path: Path) -> None:
    # Line 301 opens a quote never closed: the csv module reads the lines after it as one
    # field and gives up past its field limit, thousands of lines below.
    text = ("app_user_id,timezone\n" + rows(2, 99) + "user_00100,Europe/Berln\n"
            + rows(101, 300) + 'user_00301,"Europe/Berlin\n' + rows(302, 399)
            + ",UTC\n" + rows(401, 19999) + "user_20000,Mars/Olympus\n" + rows(20001, 20100))
    csv_file = write(tmp_path, text, "badusers.csv")
    given_up = _swallowed_to(csv_file)
    assert 400 < given_up < 20000
    path = write(tmp_path, "version: 1\naudiences:\n  a: {file: badusers.csv}\nschedules: []\n")
    found = problems_of(path)
    unclosed = (
        f"{csv_file}:301: unclosed quote: a field opens with a quote on this line and never"
        f" ends (it ran on to line {given_up}, past the limit of {csv.field_size_limit():,}"
        " characters for a field); this line was skipped and reading went on at line 302.")
    assert found[:4] == [
        f"{csv_file}:100: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?);"
        " use an IANA name such as 'Europe/Berlin'.",
        unclosed,
        f"{csv_file}:400: app_user_id is empty.",
        f"{csv_file}:20000: unknown time zone 'Mars/Olympus'; use an IANA name such as"
        " 'Europe/Berlin'."]
    assert len(found) == 5 and found[4].startswith(f"{path}:3:13: audience 'a': the CSV file")
    # Every other row is read, none swallowed: line 301 is the only one missing.
    write(tmp_path, text.replace("Berln", "Berlin").replace("\n,UTC\n", "\nuser_00400,UTC\n")
          .replace("Mars/Olympus", "UTC"), "badusers.csv")
    scan = scan_csv(csv_file)
    assert [str(p) for p in scan.problems.items] == [unclosed]
    assert scan.size == 20100 - 2


def _swallowed_to(path: Path) -> int:
    """The line where the csv module gives up on the quote of line 301."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            for _ in reader:
                pass
        except csv.Error:
            return reader.line_num
    raise AssertionError("the csv module read the whole file")


def test_an_unclosed_quote_running_to_the_end_of_the_file(tmp_path: Path) -> None:
    csv_file = write(tmp_path, 'app_user_id,timezone\nu1,UTC\nu2,"UTC\nu3,UTC\n,UTC\nu5,UTC\n',
                     "users.csv")
    scan = scan_csv(csv_file)
    assert [str(p) for p in scan.problems.items] == [
        f"{csv_file}:3: unclosed quote: a field opens with a quote on this line and never"
        " ends (it ran on to the end of the file); this line was skipped and reading went on"
        " at line 4.",
        f"{csv_file}:5: app_user_id is empty."]
    assert scan.size == 3


def test_an_unclosed_quote_on_the_last_line(tmp_path: Path) -> None:
    csv_file = write(tmp_path, 'app_user_id,timezone\nu1,UTC\nu2,"UTC', "users.csv")
    assert [str(p) for p in scan_csv(csv_file).problems.items] == [
        f"{csv_file}:3: unclosed quote: a field opens with a quote on this line and never"
        " ends (it ran on to the end of the file); this line was skipped."]


@pytest.mark.parametrize("text", [
    'app_user_id,note\nu1,"two\nlines"\nu2,"a ""quoted"" word"\n',
    'app_user_id,note\nu1,"ends at the end\nof the file"',
    'app_user_id,note\nu1,say "hi\nu2,"x"""\n',  # a quote inside a field is a character
    'app_user_id,note\r\nu1,"a\r\nb"\r\nu2,""\r\n',
])
def test_quotes_that_close_are_read_as_before(tmp_path: Path, text: str) -> None:
    csv_file = write(tmp_path, text, "users.csv")
    scan = scan_csv(csv_file)
    assert not scan.problems, scan.problems.items
    with csv_file.open(newline="") as f, csv_file.open(newline="") as g:
        assert list(RowReader(f)) == list(csv.reader(g))


def test_the_optout_file_reports_an_unclosed_quote_and_goes_on(tmp_path: Path) -> None:
    optouts = write(tmp_path, 'app_user_id,reason\nu1,asked\nu2,"asked\nu3,bounced\n,x\n',
                    "optouts.csv")
    found = read_optouts(optouts)
    assert [str(p) for p in found.problems.items] == [
        f"{optouts}:3: unclosed quote: a field opens with a quote on this line and never"
        " ends (it ran on to the end of the file); this line was skipped and reading went on"
        " at line 4.",
        f"{optouts}:5: app_user_id is empty."]
    assert found.users == {"u1", "u3"}


# --- a missing audience file -----------------------------------------------------------------

def test_a_missing_audience_file_is_one_problem_at_its_key(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("app_user_id\nu1\n")
    path = write(tmp_path, "version: 1\naudiences:\n  people:\n    file: user.csv\n"
                 "schedules: []\n")
    assert problems_of(path) == [
        f"{path}:4:11: audience 'people': the file {tmp_path / 'user.csv'} does not exist"
        " (did you mean 'users.csv'?)."]


def test_a_missing_audience_folder_and_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    path = write(tmp_path, "version: 1\naudiences:\n  a: {file: gone/a.csv}\n"
                 "  b: {file: folder.csv}\nschedules: []\n")
    assert problems_of(path) == [
        f"{path}:3:13: audience 'a': the file {tmp_path / 'gone/a.csv'} does not exist (nor"
        f" does the folder {tmp_path / 'gone'}).",
        f"{path}:4:13: audience 'b': cannot read {tmp_path / 'folder.csv'}: Is a directory."]


# --- which file a summary names --------------------------------------------------------------

def test_the_file_at_fault_is_the_csv_when_all_problems_are_there(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("app_user_id\nu1\nu1\n")
    path = write(tmp_path, "version: 1\naudiences:\n  a: {file: users.csv}\nschedules: []\n")
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    assert info.value.culprits(str(path)) == [f"the audience file {tmp_path / 'users.csv'}"]


def test_the_schedule_file_is_named_while_it_has_problems_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("app_user_id\nu1\nu1\n")
    path = write(tmp_path, "version: 2\naudiences:\n  a: {file: users.csv}\nschedules: []\n")
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    assert info.value.culprits(str(path)) == [str(path)]


def test_the_file_at_fault_may_be_the_optout_file(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text("user\nu2\n")
    path = write(tmp_path, "version: 1\nsuppress: {file: optouts.csv}\nschedules: []\n")
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    assert info.value.culprits(str(path)) == [f"the opt-out file {tmp_path / 'optouts.csv'}"]


def test_two_csv_files_at_fault_and_problems_left_unlisted() -> None:
    main = "s.yaml"
    problems = [Problem(main, 3, 9, "a", ("audience file", "a.csv")),
                Problem("a.csv", 2, None, "x"),
                Problem(main, 5, 9, "b", ("opt-out file", "b.csv")),
                Problem("b.csv", 4, None, "y")]
    assert InvalidInput(problems).culprits(main) == [
        "the audience file a.csv", "the opt-out file b.csv"]
    assert InvalidInput(problems, truncated=3).culprits(main) == [main]
