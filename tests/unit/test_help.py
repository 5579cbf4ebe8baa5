"""Help that teaches: every command's --help ends with examples and its exit statuses, and
every option says what it does and its default.

The help is rendered by the real parser in-process; the exit statuses `validate` documents
are checked against real runs of ``main()`` on real files.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from eventcron import cli
from eventcron.cli.main import build_parser
from eventcron.cli.main import commands as main_commands
from tests.unit.configs import MINIMAL


def commands() -> dict[str, argparse.ArgumentParser]:
    """Return every subcommand's parser by name."""
    return main_commands(build_parser())


COMMANDS = sorted(commands())


def section(help_text: str, title: str) -> list[str]:
    """Return the indented lines under ``title`` (up to the next blank line)."""
    lines = help_text.splitlines()
    start = lines.index(title) + 1
    body = []
    for line in lines[start:]:
        if not line.strip():
            break
        body.append(line.strip())
    return body


def statuses(help_text: str) -> dict[int, str]:
    """Return the documented exit statuses: code -> meaning."""
    found: dict[int, str] = {}
    for line in section(help_text, "Exit status:"):
        match = re.fullmatch(r"(\d+)\s+(.+)", line)
        if match:
            found[int(match[1])] = match[2]
        else:  # a long meaning, wrapped: the rest of the last status
            assert found, f"not a status line: {line!r}"
            last = list(found)[-1]
            found[last] += f" {line}"
    return found


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_ends_with_examples_and_exit_statuses(name: str) -> None:
    help_text = commands()[name].format_help()
    assert "Examples:" in help_text
    assert "Exit status" in help_text
    # Both come after the options, so they are what the reader sees last.
    assert help_text.index("options:") < help_text.index("Examples:")
    assert help_text.index("Examples:") < help_text.index("Exit status:")
    examples = section(help_text, "Examples:")
    assert 2 <= len(examples) <= 3
    documented = statuses(help_text)
    assert 0 in documented and 2 in documented  # success and a usage error, at least
    # Printed as written, so wrapped by us: nothing runs off an 80-column terminal.
    status_lines = help_text[help_text.index("Exit status:"):].splitlines()
    assert max(len(line) for line in status_lines) <= 80


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_is_a_command_line_the_parser_accepts(name: str) -> None:
    parser = build_parser()
    for example in section(commands()[name].format_help(), "Examples:"):
        words = shlex.split(example, posix=True)
        # Cut a shell redirection or pipe off: it is not the command's.
        for i, word in enumerate(words):
            if word in (">", "|"):
                words = words[:i]
                break
        assert words[:2] == ["eventcron", name], example
        args = parser.parse_args(words[1:])  # raises UsageError if it is not accepted
        assert args.command == name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_a_help_text(name: str) -> None:
    for action in commands()[name]._actions:
        assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}"


def test_every_sink_option_shows_its_default() -> None:
    sink = commands()["sink"]
    help_text = sink.format_help()
    options = help_text[help_text.index("options:"):help_text.index("Examples:")]
    # One entry per option: its line, and the help text wrapped under it.
    entries = re.split(r"\n  (?=-)", options)[1:]
    own = [a for a in sink._actions if a.option_strings and a.default is not argparse.SUPPRESS]
    assert len(entries) >= len(own)
    for entry in entries:
        if entry.startswith(("-h, --help", "--config", "--database", "--verbose",
                             "--log-format")):
            continue  # help itself, and the global options (their own slice)
        assert "default" in " ".join(entry.split()), entry
    # The four that had none before show the value they take.
    flat = " ".join(options.split())
    for shown in ("HTTP status of the failed answers (default 503)",
                  "the Retry-After of the 429 answers (default 1s)",
                  "how long each outage lasts (default 0s",
                  "the endpoint path (default /api/v1/webhook/event)"):
        assert shown in flat


def test_validate_exits_with_the_statuses_its_help_documents(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documented = statuses(commands()["validate"].format_help())
    valid = tmp_path / "schedules.yaml"
    valid.write_text(MINIMAL)
    invalid = tmp_path / "broken.yaml"
    invalid.write_text(MINIMAL.replace('"0 9 * * *"', '"0 9 * * fri-sun"'))

    assert cli.main(["validate", str(valid)]) == 0
    assert "valid" in documented[0]
    assert cli.main(["validate", str(invalid)]) == 1
    assert "invalid" in documented[1]
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "missing" in documented[1]
    assert cli.main(["validate", str(valid), "--no-such-option"]) == 2
    assert "usage" in documented[2]
    assert set(documented) == {0, 1, 2}  # and nothing the command never returns
    capsys.readouterr()
