"""Global options: described once, on `eventcron --help`; accepted before or after the
commands that read them; refused, with the reason, by the commands that would ignore them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from eventcron import cli
from eventcron.cli.main import build_parser
from eventcron.cli.main import commands as main_commands

GLOBALS = ("--config", "--database", "--verbose", "--log-format")
# What each command reads, as a person would expect from what it does.
READS = {
    "validate": {"--config"}, "next": {"--config"}, "token": {"--config"},
    "diff": {"--config", "--database"}, "send": {"--config", "--database"},
    "status": {"--config", "--database"}, "history": {"--config", "--database"},
    "deliveries": {"--config", "--database"}, "replay": {"--config", "--database"},
    "fire": {"--config", "--database"},
    "run": {"--config", "--database", "--verbose", "--log-format"},
    "demo": {"--verbose", "--log-format"},
    "schema": set(), "sink": set(), "completion": set(),
}
# The arguments a command requires, so that the parser gets as far as the global options.
NEEDS = {"fire": ["s"], "completion": ["bash"], "send": ["--user", "u", "--event-type", "a:b"]}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by name."""
    return main_commands(build_parser())


def given(flag: str) -> list[str]:
    """``flag`` with a value if it takes one."""
    return [flag] if flag == "--verbose" else [flag, "json" if flag == "--log-format" else "x"]


def test_every_command_is_in_the_table() -> None:
    assert set(commands()) == set(READS)


def test_the_top_help_describes_each_global_option_once() -> None:
    text = build_parser().format_help()
    assert "global options:" in text
    for flag in GLOBALS:
        assert text.count(f"  {flag}") == 1, flag


@pytest.mark.parametrize("name", sorted(READS))
def test_a_commands_help_names_what_it_reads_and_describes_none(name: str) -> None:
    text = commands()[name].format_help()
    for flag in GLOBALS:
        assert f"  {flag}" not in text  # no description under the command
    reads = [f for f in GLOBALS if f in READS[name]]
    if reads:
        assert f"Global options: {' '.join(reads)} (see eventcron --help)" in text
    else:
        assert "Global options" not in text


@pytest.mark.parametrize("name", sorted(READS))
def test_read_options_work_before_and_after_and_refused_ones_say_why(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for flag in GLOBALS:
        dest = flag[2:].replace("-", "_")
        for argv in ([*given(flag), name, *NEEDS.get(name, [])],
                     [name, *NEEDS.get(name, []), *given(flag)]):
            if flag in READS[name]:
                args = parser.parse_args(argv)
                assert getattr(args, dest) == (True if flag == "--verbose" else given(flag)[1])
            else:
                assert cli.main(argv) == 2, argv
                said = capsys.readouterr().err
                assert f"eventcron: error: {name} " in said and f"so it takes no {flag}." in said


def test_an_option_before_the_command_survives_the_commands_own_defaults() -> None:
    args = build_parser().parse_args(["--database", "a.db", "--verbose", "run"])
    assert args.database == "a.db" and args.verbose is True
    args = build_parser().parse_args(["--database", "a.db", "status", "--database", "b.db"])
    assert args.database == "b.db"  # the later one wins, as with any option


def test_refusals_are_usage_errors_from_the_real_command_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--config", "schedules.yaml"]) == 2
    assert "eventcron: error: schema reads no schedule file, so it takes no --config." in (
        capsys.readouterr().err)
    assert cli.main(["--database", "x.db", "sink"]) == 2
    assert "sink opens no ledger, so it takes no --database." in capsys.readouterr().err
    assert cli.main(["validate", "--database", "x.db"]) == 2
    assert "validate opens no ledger" in capsys.readouterr().err


def test_validate_of_a_missing_named_file_does_not_suggest_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexist.yaml"
    assert cli.main(["validate", str(missing)]) == 1
    said = capsys.readouterr().err
    assert f"there is no schedule file at {missing}" in said
    assert "--config" not in said
    # Without a file named, pointing at --config is the help it needs.
    monkey = pytest.MonkeyPatch()
    monkey.chdir(tmp_path)
    monkey.delenv("EVENTCRON_CONFIG", raising=False)
    try:
        assert cli.main(["validate"]) == 1
    finally:
        monkey.undo()
    assert "pass --config FILE" in capsys.readouterr().err
