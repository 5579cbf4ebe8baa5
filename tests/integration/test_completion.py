"""`eventcron completion bash|zsh|fish`: each script passes its shell's syntax check, loads in
it, and completes from the real parser through the installed `eventcron` command.

The shells come from Debian's packages (CI installs zsh and fish where it can); a shell that
is not installed skips its tests with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eventcron.cli.main import SHELLS, build_parser
from eventcron.cli.main import commands as main_commands
from eventcron.states import STATUSES

BIN = Path(sys.executable).parent  # the virtual environment's eventcron is beside python
SCRIPT = shutil.which("eventcron", path=str(BIN))
pytestmark = pytest.mark.skipif(SCRIPT is None, reason=f"no eventcron command in {BIN}")


def shell_or_skip(name: str) -> str:
    """Return the path of shell ``name``, or skip the test: it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def env() -> dict[str, str]:
    """The environment the shells run in: this eventcron first on PATH, nothing inherited
    from a completion already running."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("_ARGCOMPLETE", "_ARC_", "COMP_"))}
    return {**clean, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def script(shell: str, tmp_path: Path) -> Path:
    """Write the completion script that `eventcron completion SHELL` prints; return its path."""
    result = subprocess.run([str(SCRIPT), "completion", shell], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "eventcron" in result.stdout
    path = tmp_path / {"bash": "eventcron.bash", "zsh": "_eventcron",
                       "fish": "eventcron.fish"}[shell]
    path.write_text(result.stdout)
    return path


def commands() -> list[str]:
    """Every command name the parser has."""
    return sorted(main_commands(build_parser()))


def bash_complete(tmp_path: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """Complete the last of ``words`` in bash, as the Tab key does; return the candidates."""
    path = script("bash", tmp_path)
    line = " ".join(words)
    # The completion function gets the command, the word and the one before it, as bash
    # calls it; COMPREPLY holds the answer.
    program = ('source "$1"; shift; COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=("$@");'
               ' COMP_CWORD=$(( $# - 1 )); _python_argcomplete eventcron "${@: -1}" "${@: -2:1}";'
               ' printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run([shell_or_skip("bash"), "-c", program, "bash", str(path), *words],
                            capture_output=True, text=True, timeout=60, env=env(), check=False,
                            cwd=cwd)
    assert result.returncode == 0, (line, result.stderr)
    return [c.strip() for c in result.stdout.splitlines() if c.strip()]


@pytest.mark.parametrize("shell", SHELLS)
def test_each_script_passes_its_shells_syntax_check(shell: str, tmp_path: Path) -> None:
    binary = shell_or_skip(shell)
    path = script(shell, tmp_path)
    result = subprocess.run([binary, "-n", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # The check can fail: a broken script is refused by the same command.
    broken = tmp_path / f"broken.{shell}"
    broken.write_text(path.read_text() + "\nif then fi end }\n")
    assert subprocess.run([binary, "-n", str(broken)], capture_output=True, timeout=60,
                          check=False).returncode != 0


def test_bash_completes_every_command_from_the_parser(tmp_path: Path) -> None:
    offered = bash_complete(tmp_path, "eventcron", "")
    assert sorted(c for c in offered if not c.startswith("-")) == commands()
    assert "--help" in offered


def test_bash_completes_a_command_and_an_options_choices(tmp_path: Path) -> None:
    assert bash_complete(tmp_path, "eventcron", "sta") == ["status"]
    assert sorted(bash_complete(tmp_path, "eventcron", "deliveries", "--status", "")) == sorted(
        STATUSES)
    assert bash_complete(tmp_path, "eventcron", "completion", "z") == ["zsh"]


def test_bash_offers_global_options_once_and_not_to_commands_that_refuse_them(
        tmp_path: Path) -> None:
    top = bash_complete(tmp_path, "eventcron", "--")
    assert {"--config", "--database", "--verbose", "--log-format"} <= set(top)
    assert "--config" not in bash_complete(tmp_path, "eventcron", "schema", "--")
    assert "--record" in bash_complete(tmp_path, "eventcron", "sink", "--")


SCHEDULES = """\
version: 1
schedules:
  - {id: weekday-checkin, event_type: "a:b", cron: "0 9 * * 1-5", users: [u1]}
  - {id: weekly-digest, event_type: "a:c", cron: "0 9 * * 1", users: [u1]}
  - {id: renewal, event_type: "a:d", cron: "0 9 1 * *", users: [u1]}
"""


def test_bash_completes_the_schedule_ids_of_the_file_the_command_reads(tmp_path: Path) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "schedules.yaml").write_text(SCHEDULES)
    ids = ["weekday-checkin", "weekly-digest", "renewal"]
    offered = bash_complete(tmp_path, "eventcron", "fire", "", cwd=folder)
    assert [c for c in offered if not c.startswith("-")] == ids
    assert bash_complete(tmp_path, "eventcron", "deliveries", "--schedule", "wee",
                         cwd=folder) == ids[:2]
    # --config names the file, wherever the shell is.
    assert bash_complete(tmp_path, "eventcron", "--config", str(folder / "schedules.yaml"),
                         "history", "--schedule", "ren", cwd=tmp_path) == ["renewal"]
    # A file mid-edit completes what it can; one that is no YAML completes nothing.
    (folder / "schedules.yaml").write_text(SCHEDULES.replace('event_type: "a:d"', "oops"))
    assert bash_complete(tmp_path, "eventcron", "fire", "r", cwd=folder) == ["renewal"]
    (folder / "schedules.yaml").write_text("schedules: [unclosed\n")
    assert bash_complete(tmp_path, "eventcron", "fire", "r", cwd=folder) == []


def test_zsh_loads_the_script_and_completes_through_it(tmp_path: Path) -> None:
    zsh = shell_or_skip("zsh")
    path = script("zsh", tmp_path)
    # Loaded from $fpath, as the README installs it, compinit registers the function;
    # _describe (zsh's listing) is replaced by one that prints what it was given.
    program = ('fpath=("$1" $fpath); autoload -Uz compinit && compinit -u -d "$2";'
               ' print -r -- "registered:${_comps[eventcron]}";'
               ' source "$1/_eventcron"; _describe() { print -rl -- ${(P)2} };'
               ' words=(eventcron his); BUFFER="eventcron his"; CURSOR=${#BUFFER};'
               ' _python_argcomplete')
    result = subprocess.run([zsh, "-f", "-c", program, "zsh", str(path.parent),
                             str(tmp_path / "zcompdump")], capture_output=True, text=True,
                            timeout=60, env=env(), check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "registered:_eventcron"
    assert lines[1:] == ["history:occurrences newest first: fired or skipped, by whom, and"
                         " their rows"]


def test_fish_loads_the_script_and_completes_through_it(tmp_path: Path) -> None:
    fish = shell_or_skip("fish")
    path = script("fish", tmp_path)
    program = 'source $argv[1]; complete -C "eventcron completion "; complete -C "eventcron re"'
    result = subprocess.run([fish, "--no-config", "-c", program, str(path)],
                            capture_output=True, text=True, timeout=60, env=env(), check=False)
    assert result.returncode == 0, result.stderr
    names = [line.split("\t")[0] for line in result.stdout.splitlines()
             if not line.startswith("-")]
    assert names == [*sorted(SHELLS), "replay"]
