"""Command start-up: `eventcron --version` and `validate` against the bare interpreter.

The baseline is the work any command must do, measured in the same run with the same
interpreter: starting Python and importing PyYAML and the standard modules validation uses.
Runs are interleaved (baseline, --version, validate, baseline, ...) so that a busy machine
slows all three alike, and the median of each is compared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Figure

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "schedules.example.yaml"
BASELINE = [sys.executable, "-c", "import yaml, zoneinfo, csv, json"]
VERSION_TARGET = 1.5  # times the baseline
VALIDATE_TARGET = 3.0


def _eventcron() -> list[str]:
    return [sys.executable, "-m", "eventcron"]


# As an installed program runs: with its bytecode cached (pip compiles it at install time).
# Some shells set PYTHONDONTWRITEBYTECODE, which would make every start compile eventcron.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - began


def run(rounds: int) -> list[Figure]:
    """Time ``rounds`` interleaved runs of each command; return the two ratios."""
    commands = {"baseline": BASELINE, "version": [*_eventcron(), "--version"],
                "validate": [*_eventcron(), "validate", str(EXAMPLE)]}
    for argv in commands.values():
        _time(argv)  # warm the page cache and the bytecode cache first
    taken: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            taken[name].append(_time(argv))
    median = {name: statistics.median(times) for name, times in taken.items()}
    base = median["baseline"]
    out = []
    for name, target, what in (("version", VERSION_TARGET, "eventcron --version"),
                               ("validate", VALIDATE_TARGET,
                                "eventcron validate schedules.example.yaml")):
        ratio = median[name] / base
        out.append(Figure(f"start-up, {what}", median[name] * 1000, "ms",
                          f"<= {target:g}x baseline", ratio <= target,
                          f"python -c 'import yaml, zoneinfo, csv, json': {base * 1000:.0f} ms",
                          ratio, f"median of {rounds} interleaved runs"))
    return out


if __name__ == "__main__":
    for figure in run(int(sys.argv[1]) if len(sys.argv) > 1 else 21):
        print(" | ".join(figure.cells()))
