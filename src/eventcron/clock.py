"""The one place eventcron reads the real clock; everything that decides takes ``now``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current time (tests pass their own)."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        return datetime.now(UTC)


def ms(seconds: float) -> int:
    """Convert seconds to whole milliseconds (the ledger's unit)."""
    return round(seconds * 1000)


def to_ms(t: datetime) -> int:
    """Convert an aware datetime to milliseconds since the Unix epoch."""
    return ms(t.timestamp())


def from_ms(value: int) -> datetime:
    """Convert milliseconds since the Unix epoch to an aware UTC datetime."""
    return datetime.fromtimestamp(value / 1000, UTC)


def rfc3339(t: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z``, to the second."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def monotonic() -> float:
    """Return seconds on a clock that never jumps, for measuring durations."""
    return time.monotonic()
