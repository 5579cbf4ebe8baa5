"""The wheel and sdist that `python -m build` makes, and the man page the wheel carries.

The build is the real one: the standard front-end builds the sdist, then the wheel from the
sdist, each in an isolated environment with only [build-system] requires (from PyPI). CI
(.ci/run, `./dev package`) goes on to install the wheel into a fresh virtual environment.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventcron import __version__
from eventcron.cli.main import build_parser, commands

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "eventcron.service"
BUILD_TIMEOUT = 540  # seconds; a first build downloads setuptools and argparse-manpage
MAN_PAGE = f"eventcron-{__version__}.data/data/share/man/man1/eventcron.1"


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _clean_tree(to: Path) -> Path:
    """Copy the files a fresh clone would have, with the work tree's changes, into ``to``.

    Not the work tree itself: setuptools reads the SOURCES.txt a previous build left in
    src/eventcron.egg-info into each new sdist, so a file missing from MANIFEST.in would
    still be packed there, and only a fresh clone (CI) would show the broken build.
    """
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # not one deleted in the work tree
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("git") is None:
        pytest.fail("git is needed to copy the files a fresh clone has")
    tree = _clean_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert result.returncode == 0, (
        f"python -m build failed ({result.returncode}):\n{result.stdout[-4000:]}"
        f"\n{result.stderr[-4000:]}")
    wheels = list(out.glob("eventcron-*.whl"))
    sdists = list(out.glob("eventcron-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Built(wheel=wheels[0], sdist=sdists[0])


def _manpage_specs() -> list[dict[str, str]]:
    """Return [tool.build_manpages] manpages as dicts of their ':name=value' options."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    specs = []
    for spec in pyproject["tool"]["build_manpages"]["manpages"]:
        output, _, options = spec.partition(":")
        specs.append({"output": output,
                      **dict(re.findall(r"([^:=]+)=([^:]*)", options))})
    return specs


def _all_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Return the parser and each command's parser, by the name the page heads them with."""
    found = {parser.prog: parser}
    for name, sub in commands(parser).items():
        found[f"{parser.prog} {name}"] = sub
    return found


def _words(text: str) -> str:
    return " ".join(text.split())


def test_sdist_carries_what_the_wheel_build_needs(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    specs = _manpage_specs()
    assert specs, "pyproject.toml names no man page"
    needed = {"pyproject.toml", "README.md"} | {s["pyfile"] for s in specs if "pyfile" in s}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    # The page is generated from the sdist's sources, never carried stale in it.
    assert not {s["output"] for s in specs} & names
    with zipfile.ZipFile(built.wheel) as wheel:
        modules = {n for n in wheel.namelist() if n.startswith("eventcron/")}
    assert modules, "the wheel holds no eventcron package"
    assert {f"src/{m}" for m in modules} <= names


def test_wheel_holds_the_man_page_and_the_console_script(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        assert MAN_PAGE in names, sorted(n for n in names if ".data/" in n)
        page = wheel.read(MAN_PAGE).decode()
        entry_points = wheel.read(f"eventcron-{__version__}.dist-info/entry_points.txt")
    assert page.startswith(".TH EVENTCRON \"1\"")
    scripts = configparser.ConfigParser()
    scripts.read_string(entry_points.decode())
    assert scripts["console_scripts"]["eventcron"] == "eventcron.cli:run_main"


@pytest.fixture(scope="module")
def rendered(built: Built, tmp_path_factory: pytest.TempPathFactory) -> str:
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed (apt-get install man-db), so the page is not rendered")
    page = tmp_path_factory.mktemp("man") / "eventcron.1"
    with zipfile.ZipFile(built.wheel) as wheel:
        assert MAN_PAGE in wheel.namelist(), f"the wheel holds no {MAN_PAGE}"
        page.write_bytes(wheel.read(MAN_PAGE))
    # C locale: plain ASCII out; --nh: no word split at a line end, so the text can be searched.
    env = {**os.environ, "LC_ALL": "C", "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"}
    result = subprocess.run([man, "--nh", "--nj", "-l", str(page)], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # groff warns here about roff it cannot read
    return result.stdout


def test_man_renders_the_page_with_every_command(rendered: str) -> None:
    lines = rendered.splitlines()
    assert lines[0].split() == ["EVENTCRON(1)", "eventcron", "manual", "EVENTCRON(1)"]
    name = lines[lines.index("NAME") + 1].strip()
    assert name == "eventcron - send scheduled events to the Inbound Events API"
    for heading in ("SYNOPSIS", "DESCRIPTION", "OPTIONS", "AUTHOR"):
        assert heading in lines
    parsers = _all_parsers(build_parser())
    assert len(parsers) > 1, "build_parser() has no commands"
    headings = {line for line in lines if line and not line[0].isspace()}
    missing = [prog for prog in parsers
               if prog != "eventcron" and f"COMMAND '{prog}'" not in headings]
    assert not missing, f"commands without a section in eventcron(1): {missing}"


def test_man_page_carries_every_option_and_each_commands_epilog(rendered: str) -> None:
    text = _words(rendered)
    for prog, parser in _all_parsers(build_parser()).items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert option in text, f"{prog}: {option} is not in eventcron(1)"
        if prog != "eventcron" and parser.epilog:
            # Examples and exit statuses: each line of the command's --help ending.
            for line in filter(None, map(_words, parser.epilog.splitlines())):
                assert line in text, f"{prog}: {line!r} is not in eventcron(1)"


def test_the_units_documentation_names_the_page_the_wheel_installs(
        built: Built, tmp_path: Path) -> None:
    documentation = [line.partition("=")[2].split() for line in UNIT.read_text().splitlines()
                     if line.startswith("Documentation=")]
    assert documentation and documentation[0][0] == "man:eventcron(1)", documentation
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None or shutil.which("man") is None:
        pytest.skip("needs systemd-analyze and man (Debian: systemd, man-db) to look it up")
    pages = tmp_path / "man"
    (pages / "man1").mkdir(parents=True)
    with zipfile.ZipFile(built.wheel) as wheel:
        (pages / "man1" / "eventcron.1").write_bytes(wheel.read(MAN_PAGE))
    unit = tmp_path / "eventcron.service"
    # verify checks that ExecStart names an executable file; the pages are what is tested.
    unit.write_text(UNIT.read_text().replace("/opt/eventcron/bin/eventcron", sys.executable))
    # The trailing colon keeps man's own path, where systemd.service(5) is.
    env = {**os.environ, "MANPATH": f"{pages}:"}
    verify = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert verify.returncode == 0, verify.stderr
    assert "man eventcron(1)" not in verify.stderr
