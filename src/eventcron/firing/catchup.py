"""Catch-up after downtime, pure: which missed occurrences to fire, which to skip and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from eventcron.clock import rfc3339
from eventcron.config import CatchUpMode, format_duration
from eventcron.timing import Timing, fires_after, latest_until

MAX_MISSED: Final = 100_000  # occurrences examined per job; older ones are only counted


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The decision for one job: occurrences to fire, and skipped ones with reasons."""

    fire: tuple[datetime, ...] = ()
    skip: tuple[tuple[datetime, str], ...] = ()
    uncounted: bool = False  # more than MAX_MISSED were missed; only those were examined
    missed: int = field(default=0)

    def describe(self, when: str = "while down") -> str:
        """One line for the log; ``when`` says how they were missed."""
        more = "more than " if self.uncounted else ""
        fired = ", ".join(rfc3339(t) for t in self.fire[-3:])
        if len(self.fire) > 3:
            fired = f"{len(self.fire)} of them, the last {fired}"
        action = f"firing {fired}" if self.fire else "firing none"
        return f"missed {more}{self.missed} occurrences {when}; {action};" \
               f" skipping {len(self.skip)}"


def missed(timing: Timing, watermark: datetime, now: datetime) -> tuple[list[datetime], bool]:
    """Return occurrences in ``(watermark, now]`` (at most :data:`MAX_MISSED`, the latest)."""
    out: list[datetime] = []
    capped = False
    for t in fires_after(timing, watermark, now):
        out.append(t)
        if len(out) > MAX_MISSED:
            del out[: len(out) - MAX_MISSED]
            capped = True
    return out, capped


def passed_before_load(timing: Timing, loaded: datetime, window: float) -> datetime | None:
    """Return the latest occurrence in ``[loaded - window, loaded]``, or None.

    A schedule loaded (new or retimed) at ``loaded`` starts firing after that instant; this
    is the occurrence the load passed over, recorded as skipped so that it is visible.
    """
    latest = latest_until(timing, loaded)
    if latest is None or latest < loaded - timedelta(seconds=window):
        return None
    return latest


def decide(occurrences: list[datetime], now: datetime, window: float, mode: CatchUpMode,
           *, capped: bool = False) -> CatchUp:
    """Apply ``catch_up`` (seconds) and ``catch_up_mode`` to missed occurrences (ascending)."""
    horizon = now - timedelta(seconds=window)
    recent = [t for t in occurrences if t >= horizon]
    old = [t for t in occurrences if t < horizon]
    too_old = f"missed by more than catch_up ({format_duration(window)})"
    skip = [(t, too_old) for t in old]
    if mode == "none":
        skip += [(t, "catch_up_mode is none") for t in recent]
        fire: list[datetime] = []
    elif mode == "latest":
        fire = recent[-1:]
        skip += [(t, "a later occurrence was fired instead (catch_up_mode latest)")
                 for t in recent[:-1]]
    else:
        fire = recent
    skip.sort()
    return CatchUp(tuple(fire), tuple(skip), capped, len(occurrences))
