"""The invariants every reliability scenario checks, in one place.

For a campaign of known occurrences, after the dust settles:
1. every due occurrence is exactly one ledger row, pending or final, a final failure with
   its reason;
2. the receiver saw every key the ledger calls delivered, and no key the ledger lacks;
3. a key reached the receiver more than once only where the answer to an earlier attempt
   was lost (the process was killed, or the request timed out or its connection broke
   after it was sent) — and a key is the same for every attempt of an occurrence, so any
   repeat carries the same Idempotency-Key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from eventcron.ledger import Filters, Ledger, Row

FINAL = {"delivered", "failed", "expired", "cancelled"}


@dataclass
class Report:
    """What a scenario ended with, for its assertions and its printed figures."""

    rows: int
    delivered: int
    pending: int
    failed: int
    repeated: int  # keys the receiver accepted more than once
    requests: int  # requests the receiver answered (any status)

    def line(self) -> str:
        return (f"{self.rows} rows: {self.delivered} delivered, {self.pending} pending,"
                f" {self.failed} failed or expired; receiver answered {self.requests}"
                f" requests, {self.repeated} keys more than once")


def check(db_url: str, occurrences: Iterable[tuple[str, str]],
          received: Iterable[tuple[str | None, int | None, str | None]], *,
          repeats: Literal["never", "after_timeout", "after_kill"]) -> Report:
    """Check the invariants.

    ``occurrences``: the (schedule, app_user_id) pairs that must each have one row (one
    occurrence per schedule in these campaigns). ``received``: (idempotency_key, status,
    app_user_id) for every request the receiver answered. ``repeats``: when a key may
    reach the receiver twice: never; after an attempt that timed out (the row then shows
    a later attempt); or after a kill (whose lost attempt the ledger never learnt of).
    """
    expected = Counter(occurrences)
    ledger = Ledger.open(db_url, create=False)
    try:
        rows = ledger.rows(Filters(schedule=tuple({s for s, _ in expected})))
    finally:
        ledger.close()
    have = Counter((r.schedule_id, r.app_user_id) for r in rows)
    missing = expected - have
    assert not missing, f"occurrences without a row: {list(missing)[:5]}"
    doubled = [k for k, n in have.items() if n > 1]
    assert not doubled, f"occurrences with more than one row: {doubled[:5]}"
    for row in rows:
        assert row.status == "pending" or row.status in FINAL, row
        if row.status in ("failed", "expired"):
            assert row.last_error, f"a final failure without its reason: {row}"
    received = list(received)
    accepted = Counter(key for key, status, _ in received if status == 200 and key)
    by_key = {r.event_id: r for r in rows}
    delivered = {r.event_id for r in rows if r.status == "delivered"}
    unseen = delivered - set(accepted)
    assert not unseen, f"delivered in the ledger, never accepted by the receiver: {unseen}"
    unknown = set(accepted) - set(by_key)
    assert not unknown, f"accepted keys the ledger does not have: {list(unknown)[:5]}"
    # One key per (schedule, user) occurrence: a repeat can only carry the same key.
    keys_per_user: dict[str, set[str]] = {}
    for key, status, user in received:
        if status == 200 and key and user:
            keys_per_user.setdefault(user, set()).add(key)
    assert all(len(keys) == 1 for keys in keys_per_user.values()), "a user got two keys"
    repeated = [k for k, n in accepted.items() if n > 1]
    if repeats == "never":
        assert not repeated, f"keys accepted more than once without a lost answer: {repeated}"
    elif repeats == "after_timeout":
        for key in repeated:
            # The receiver accepted an attempt whose answer came too late; the ledger
            # counted it as failed and tried again.
            assert by_key[key].attempts >= 2, by_key[key]
    return Report(len(rows), sum(1 for r in rows if r.status == "delivered"),
                  sum(1 for r in rows if r.status == "pending"),
                  sum(1 for r in rows if r.status in ("failed", "expired")),
                  len(repeated), len(received))


def rows_of(db_url: str) -> list[Row]:
    """All ledger rows."""
    ledger = Ledger.open(db_url, create=False)
    try:
        return ledger.rows(Filters())
    finally:
        ledger.close()
