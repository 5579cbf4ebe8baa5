"""Jitter: a user's deterministic delay after an occurrence's nominal time.

Holds :func:`jitter_delay`, a hash of (schedule, user, nominal instant) that every
process on every machine computes alike. Pure: no randomness source, no clock.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

from eventcron.timing.walltime import as_utc

_ONE_MILLISECOND: Final = timedelta(milliseconds=1)
_JITTER_PERSON: Final = b"eventcron jitter"  # blake2b personalisation, at most 16 bytes


def jitter_delay(schedule_id: str, app_user_id: str, nominal: datetime,
                 jitter: timedelta) -> timedelta:
    """Return a user's deterministic delay in ``[0, jitter)``, in whole milliseconds.

    The delay comes from a blake2b hash of the three values, so every process on every
    machine agrees on it; ``timedelta(0)`` when ``jitter`` is under a millisecond.

    Raises:
        ValueError: ``jitter`` is negative or ``nominal`` is naive.

    """
    if jitter < timedelta(0):
        raise ValueError(f"jitter must not be negative, got {jitter}")
    span = jitter // _ONE_MILLISECOND
    if span == 0:
        return timedelta(0)
    when = as_utc(nominal, "nominal").isoformat()
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    text = f"{len(schedule_id)}:{schedule_id}|{len(app_user_id)}:{app_user_id}|{when}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=_JITTER_PERSON).digest()
    return timedelta(milliseconds=int.from_bytes(digest, "big") % span)
