"""Hostile input through the command line: a clear error, bounded time and memory, no traceback."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import eventcron_command
from tests.acceptance.processes import clean_env

MAX_RSS_MB = 300  # a child's peak resident memory, whatever the input


# Runs one command and writes its peak RSS (KiB) to argv[1]. A small interposed parent is
# needed: Linux carries the exec-ing parent's high-water mark into the child's ru_maxrss, so
# a child forked straight from a large pytest process would report pytest's peak, not its own.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def measured(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float,
                                                float]:
    """Run `eventcron ARGS`; return the result, seconds taken and that child's peak RSS (MB)."""
    out, err, peak = folder / "out.txt", folder / "err.txt", folder / "peak.txt"
    began = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        code = subprocess.call([sys.executable, "-c", PEAK_OF_CHILD, str(peak),
                                eventcron_command(), *args],
                               cwd=folder, env=clean_env(), stdout=stdout, stderr=stderr)
    took = time.monotonic() - began
    result = subprocess.CompletedProcess([eventcron_command(), *args], code,
                                         out.read_text(errors="replace"),
                                         err.read_text(errors="replace"))
    return result, took, int(peak.read_text()) / 1024


def validate(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `eventcron validate ARGS`, measured."""
    return measured(folder, "validate", *args)


def bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghijk":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


CASES: dict[str, tuple[bytes, str]] = {
    "alias bomb": (bomb().encode(), "a YAML alias bomb?"),
    "invalid UTF-8": (b"version: 1\nschedules:\n  - id: caf\xe9\n", "invalid UTF-8"),
    "NUL bytes": (b"version: 1\n\x00\x00\x00", "a NUL byte is not allowed"),
    "nested 10,000 deep": (b"version: 1\nx: " + b"[" * 10000 + b"]" * 10000 + b"\n",
                           "nest"),
    "binary junk": (random.Random(1).randbytes(2_000_000), "schedules.yaml:"),
    "a user id of 10,000 characters": (
        b"version: 1\nschedules:\n  - {id: s, event_type: e, every: 1h, users: ["
        + b"u" * 10000 + b"]}\n", "10,000 characters long"),
    "control characters in ids": (
        b'version: 1\nschedules:\n  - {id: "a\\x07b", event_type: "e\\x1bt", every: 1h,'
        b' users: ["u\\x00"]}\n', "control character"),
    "data nested 5,000 deep": (
        b"version: 1\nschedules:\n  - {id: s, event_type: e, every: 1h, users: [u], data: "
        + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"}\n", "nest"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_schedule_files(tmp_path: Path, name: str) -> None:
    content, expected = CASES[name]
    (tmp_path / "schedules.yaml").write_bytes(content)
    result, took, rss = validate(tmp_path)
    print(f"\n{name}: exit {result.returncode} in {took:.2f}s, peak RSS {rss:.0f} MB")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert rss < MAX_RSS_MB


@pytest.mark.timeout(60)
def test_a_50_mb_file(tmp_path: Path) -> None:
    with (tmp_path / "schedules.yaml").open("wb") as f:
        f.write(b"version: 1\nschedules:\n")
        f.write(b"# padding\n" * (5 * 1024 * 1024))
    result, took, rss = validate(tmp_path)
    print(f"\n50 MB: exit {result.returncode} in {took:.2f}s, peak RSS {rss:.0f} MB")
    assert result.returncode == 1
    assert "more than the 4 MiB a schedule file may have" in result.stderr
    assert rss < MAX_RSS_MB


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_million_row_csv_with_broken_lines(tmp_path: Path) -> None:
    broken = {10: "b10,Nowhere/City\n", 500_000: "b500000,UTC,extra\n", 999_990: ",UTC\n"}
    with (tmp_path / "people.csv").open("w") as f:
        f.write("app_user_id,timezone\n")
        chunk = []
        for i in range(1_000_000):
            chunk.append(broken.get(i, f"u{i:07d},UTC\n"))
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    (tmp_path / "schedules.yaml").write_text(
        "version: 1\naudiences:\n  people: {file: people.csv}\nschedules:\n"
        "  - {id: s, event_type: e, every: 1h, audience: people}\n")
    result, took, rss = validate(tmp_path)
    print(f"\n1,000,000-row CSV with 3 broken lines: exit {result.returncode} in"
          f" {took:.1f}s, peak RSS {rss:.0f} MB")
    assert result.returncode == 1
    assert "people.csv:12: unknown time zone 'Nowhere/City'" in result.stderr
    assert "people.csv:500002: the row has 3 fields but the header has 2." in result.stderr
    assert "people.csv:999992: app_user_id is empty." in result.stderr
    assert "Traceback" not in result.stderr
    assert rss < MAX_RSS_MB
    run, _, rss = measured(tmp_path, "run")
    assert run.returncode == 78
    assert rss < MAX_RSS_MB
    assert "Traceback" not in run.stderr
