"""Frequency caps in the ledger: each new row takes a slot of its user's window, or is suppressed.

A cap of N per window is N slots, numbered 0..N-1, of (user, cap, window) in ``cap_slots``,
unique by key. A new pending row with a cap takes the lowest free slot in the transaction
that inserts it: instances enqueueing at once cannot both take the last one, whatever they
read before, because the second INSERT finds the key taken (on PostgreSQL it waits for the
first to commit). The loser reads again and tries the next free slot; a row that finds none
left is set ``suppressed``, its reason naming what filled the window.

Every step is one statement for the whole batch, whatever its size (see ``queries.py``);
a round more only where another instance took a slot between this one's read and insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection

from eventcron.clock import from_ms, rfc3339
from eventcron.ledger.dialect import Dialect

Key = tuple[str, str, int]  # (user, cap, window start ms)
Holder = tuple[int, str, int]  # (delivery id, schedule id, scheduled_for ms)


class Want(NamedTuple):
    """A new row that needs a slot. Sorted as tuples: by key, then by row id.

    Its first three fields are its key: ``want[:3]``.
    """

    user: str
    cap: str  # the window's kind: "h", "day" or "week"
    window: int  # ms
    delivery_id: int
    limit: int
    until: int  # ms
    label: str  # the window for messages: "2026-12-07 (Europe/Berlin)"
    schedule_id: str
    scheduled_for: int  # ms


def take(conn: Connection, dialect: Dialect, wants: Sequence[Want], now: int) -> int:
    """Give each row a slot of its window, or set it suppressed; return how many were.

    Runs in the caller's transaction, the one that inserted the rows. Per row it does a
    few dictionary lookups: it runs for every row of a capped fire.
    """
    pending = sorted(wants)  # slots are inserted in key order: see queries.SQLITE_TAKE_SLOTS
    holders: dict[Key, dict[int, Holder]] = {}
    full: list[Want] = []
    again = False  # a later round: some rows may hold a slot already
    while pending:
        keys = list(dict.fromkeys([w[:3] for w in pending]))
        for key in keys:
            holders.pop(key, None)
        for user, cap, window, slot, delivery_id, schedule_id, at in dialect.slots_held(conn,
                                                                                       keys):
            holders.setdefault((user, cap, int(window)), {})[int(slot)] = (
                int(delivery_id), schedule_id, int(at))
        planned: list[tuple[Want, int]] = []
        last: tuple[Any, ...] = ()
        held: dict[int, Holder] = {}
        placed: set[int] = set()
        slot = 0
        for w in pending:  # grouped by key: the next free slot goes on from the last row's
            if w[:3] != last:
                last, held, slot = w[:3], holders.get(w[:3], {}), 0
                placed = {h[0] for h in held.values()} if again else placed
            if again and w.delivery_id in placed:
                continue  # it took its slot in an earlier round
            while slot in held:
                slot += 1
            if slot < w.limit:
                planned.append((w, slot))
                slot += 1
            else:
                full.append(w)
        if not planned:
            break
        taken = dialect.take_slots(conn, [
            (w.user, w.cap, w.window, slot, w.until, w.delivery_id, w.schedule_id,
             w.scheduled_for) for w, slot in planned], now)
        if taken == len(planned):
            for w, slot in planned:
                holders.setdefault(w[:3], {})[slot] = (w.delivery_id, w.schedule_id,
                                                       w.scheduled_for)
            break
        # Another instance took some of these slots since the read: read them again (it has
        # committed them, or the INSERT would still wait), and place the rest.
        pending = [w for w, _ in planned]
        again = True
    if full:
        said: dict[tuple[str, str, tuple[tuple[Any, ...], ...]], str] = {}
        why: list[tuple[int, str]] = []
        for w in full:
            held = holders[w[:3]]
            # Users of one fire mostly share what filled their window: say it once.
            fillers = tuple([held[s][1:] for s in sorted(held)])
            text = said.get((w.cap, w.label, fillers))
            if text is None:
                text = said[(w.cap, w.label, fillers)] = reason(f"{w.limit}/{w.cap}",
                                                                w.label, fillers)
            why.append((w.delivery_id, text))
        dialect.suppress_rows(conn, why, now)
    return len(full)


def reason(cap: str, label: str, fillers: Sequence[tuple[Any, ...]]) -> str:
    """Say why a row found no slot: which cap, which window, what filled it (by slot).

    ``fillers``: the (schedule, occurrence ms) of each row holding a slot of the window.
    """
    sent = [f"{schedule_id} of {rfc3339(from_ms(at))}" for schedule_id, at in fillers]
    listed = ", ".join(sent[:-1]) + " and " + sent[-1] if len(sent) > 1 else "".join(sent)
    return f"per-user cap {cap} reached for {label}: filled by {listed}"
