"""Retry policy, pure: (outcome, attempt, now) -> what the row becomes, and when.

Connection errors, timeouts, 408, 425, 429 and 5xx are retried with exponential backoff
and full jitter, honouring ``Retry-After``; other 4xx are permanent; 401 holds the row
without spending an attempt (the token is wrong, not the event). Quiet hours hold an
attempt due inside them until the window's end (:func:`past_quiet_hours`).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal, NamedTuple

from eventcron.campaign import Rules, expired_by_quiet_hours, held_by_quiet_hours
from eventcron.clock import from_ms, to_ms
from eventcron.config import Delivery

RETRIABLE_STATUS: Final = frozenset({408, 425, 429})
LAST_CHANCE_MS: Final = 100  # ms before the expiry for a last attempt a backoff overshoots
Kind = Literal["delivered", "retry", "permanent", "unauthorized"]


class Outcome(NamedTuple):
    """What one attempt produced: an HTTP status, or an error before any status."""

    kind: Kind
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from the response, if it said


class Decision(NamedTuple):
    """What the row becomes: final, or pending until ``next_attempt_at`` (ms).

    Named tuples, not frozen dataclasses: one of each is made per request, and a frozen
    dataclass pays a ``object.__setattr__`` call per field.
    """

    status: Literal["delivered", "pending", "failed", "expired"]
    attempts: int
    next_attempt_at: int
    reason: str | None = None
    hold: bool = False  # pending because the endpoint is paused, not because of this event


def classify(status_code: int) -> Kind:
    """Classify an HTTP status per the retry policy."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 401:
        return "unauthorized"
    if status_code in RETRIABLE_STATUS or 500 <= status_code < 600:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Parse a ``Retry-After`` header (seconds or an HTTP date) into seconds from ``now``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(attempt: int, policy: Delivery, rng: random.Random) -> float:
    """Return the wait in seconds before retry number ``attempt`` (1-based), fully jittered."""
    # Cap the exponent so huge attempt counts cannot overflow the float.
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** min(attempt - 1, 60))
    return rng.uniform(0, ceiling)


def decide(outcome: Outcome, attempts: int, now: int, expires_at: int, *, policy: Delivery,
           rng: random.Random) -> Decision:
    """Decide a row's fate after an attempt.

    ``attempts`` counts earlier attempts; ``now`` and ``expires_at`` are ms since the epoch.
    """
    if outcome.kind == "unauthorized":
        # Not this event's fault: keep it pending with its attempts unspent.
        return Decision("pending", attempts, now, _reason(outcome), hold=True)
    spent = attempts + 1
    if outcome.kind == "delivered":
        return Decision("delivered", spent, now)
    reason = _reason(outcome)
    if outcome.kind == "permanent":
        return Decision("failed", spent, now, reason)
    if spent >= policy.max_attempts:
        return Decision("failed", spent, now, f"{reason}; gave up after {spent} attempts")
    wait = backoff(spent, policy, rng)
    if outcome.retry_after is not None:
        asked = min(outcome.retry_after, policy.max_backoff)
        if now + round(asked * 1000) >= expires_at:
            return Decision("expired", spent, now, f"{reason}; the server asked to wait past"
                            " the expiry (delivery.expires_after)")
        wait = max(wait, asked)
    last_chance = expires_at - LAST_CHANCE_MS
    if last_chance <= now:
        return Decision("expired", spent, now, f"{reason}; no time left before the expiry"
                        " (delivery.expires_after)")
    # A backoff reaching past the expiry becomes one last attempt just before it. (Full
    # jitter may also pick a wait of zero: the retry is then due at once.)
    return Decision("pending", spent, min(now + round(wait * 1000), last_chance), reason)


class QuietHold(NamedTuple):
    """What quiet hours make of an attempt due inside them: wait for their end, or expire."""

    status: Literal["pending", "expired"]
    at: int  # ms: the window's end (pending), or ``now`` (expired)
    reason: str


def past_quiet_hours(rules: Rules, schedule_id: str, zone: str | None, at: int, *, now: int,
                     expires_at: int) -> QuietHold | None:
    """Return where an attempt due at ``at`` goes when that is inside its quiet hours.

    None when it is not. Else pending until the window's end (no attempt is spent by the
    wait), or expired when the end is at or after ``expires_at``. ``zone``: the row's
    recipient zone (None: the schedule's own); times are ms since the epoch.
    """
    end = rules.quiet_until(schedule_id, zone, from_ms(at))
    quiet = rules.quiet_hours(schedule_id)
    if end is None or quiet is None:
        return None
    where = zone or "the schedule's zone"  # a row from before rows kept their zone
    end_ms = to_ms(end)
    if end_ms >= expires_at:
        return QuietHold("expired", now, expired_by_quiet_hours(quiet, where))
    return QuietHold("pending", end_ms, held_by_quiet_hours(quiet, where, end))


def _reason(outcome: Outcome) -> str:
    if outcome.error:
        return outcome.error
    if outcome.status_code is not None:
        return f"HTTP {outcome.status_code}"
    return outcome.kind
