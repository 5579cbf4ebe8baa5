"""What every benchmark shares: results, the machine description, scratch files."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.nginx import nginx_version


@dataclass(frozen=True)
class Figure:
    """One measured figure with its target and the baseline measured in the same run."""

    name: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: informational, no target
    baseline: str = ""
    ratio: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        value = f"{self.value:,.0f}" if self.value >= 100 else f"{self.value:,.2f}"
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else ""
        met = {True: "yes", False: "NO", None: ""}[self.met]
        return [self.name, f"{value} {self.unit}", self.target, self.baseline, ratio, met]


def machine() -> list[str]:
    """Describe the machine and the software versions measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in
                         ("eventcron", "httpx", "aiohttp", "sqlalchemy", "apscheduler"))
    load = os.getloadavg()
    return [
        f"{cpu}, {os.cpu_count()} cores{mem}; load before the run {load[0]:.2f}",
        f"{platform.platform()}; Python {sys.version.split()[0]}; SQLite"
        f" {sqlite3.sqlite_version}; {nginx_version()}",
        versions,
    ]


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False, cwd=Path(__file__).parent)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True, check=False, cwd=Path(__file__).parent).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes in src/)" if dirty else "")


def write_csv(path: Path, n: int, *, prefix: str = "u", tz: bool = False) -> None:
    """Write an audience CSV of ``n`` users, streaming (a million rows stay cheap)."""
    with path.open("w") as f:
        f.write("app_user_id,timezone,plan\n" if tz else "app_user_id,plan\n")
        chunk: list[str] = []
        for i in range(n):
            chunk.append(f"{prefix}{i:07d},UTC,p{i % 3}\n" if tz else f"{prefix}{i:07d},p{i % 3}\n")
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
