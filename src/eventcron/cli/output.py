"""What every command shares: exit codes, the two errors main() turns into sentences, output."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Final, TextIO

from eventcron.text import count

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "Failure", "UsageError",
           "count", "err", "local_iso", "out"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 78  # sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus uses it


class UsageError(Exception):
    """Bad arguments: printed with the usage line, exit code 2."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        self.parser = parser


class Failure(Exception):
    """A command could not do its job: printed as a sentence, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def out(line: str = "", stream: TextIO | None = None) -> None:
    """Print a line of the command's output (standard output unless told)."""
    print(line, file=stream or sys.stdout)


def err(line: str) -> None:
    """Print a line to standard error."""
    print(line, file=sys.stderr)


def local_iso(t: datetime) -> str:
    """Format a time in its own zone as RFC 3339 with its offset, to the second."""
    return t.isoformat(timespec="seconds")


# --- commands ------------------------------------------------------------------------------
