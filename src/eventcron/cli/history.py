"""`eventcron history`: each occurrence, fired or skipped, who did it, and what its rows became.

Only the ledger is read (``--database`` works with no valid schedule file). The JSON object
of an occurrence is written here once; ``status --json`` uses it for ``last_occurrence``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import zoneinfo
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any, Final

from eventcron.cli.common import ledger_only
from eventcron.cli.output import EXIT_OK, UsageError, out
from eventcron.clock import from_ms, rfc3339, to_ms
from eventcron.problems import did_you_mean

if TYPE_CHECKING:
    from eventcron.ledger import HistoryEntry

BY_HAND: Final = "eventcron fire"  # how the identity of `eventcron fire` starts
SENT_BY_HAND: Final = "eventcron send"  # and that of `eventcron send`
_HEADER: Final = ("LOCAL TIME", "SCHEDULE@ZONE", "OUTCOME", "ROWS", "FIRST", "LAST", "BY",
                  "ROWS BY STATE; REASON")


def cmd_history(args: argparse.Namespace) -> int:
    """List occurrences newest first, fired or skipped, with their rows by state."""
    since = to_ms(args.since) if args.since is not None else None
    if args.changes:
        from eventcron.cli.changes import show_changes

        if args.schedule:
            raise UsageError("--schedule does not apply to --changes: plans cover every"
                             " schedule", args.parser)
        return show_changes(args, since=since, limit=args.limit or None)
    schedules = tuple(args.schedule or ())
    with ledger_only(args) as (ledger, _):
        entries = ledger.history(schedules, since, args.limit or None)
        known = ledger.latest_occurrences().keys() if schedules and not entries else ()
    if args.json:
        out(json.dumps([entry_json(e) for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not entries:
        out(_nothing(schedules, since, known))
        return EXIT_OK
    for line in table(entries):
        out(line)
    if args.limit and len(entries) == args.limit:
        out(f"(the newest {args.limit:,}; --limit 0 shows all, --since and --schedule narrow)",
            sys.stderr)
    return EXIT_OK


def _nothing(schedules: tuple[str, ...], since: int | None, known: Any) -> str:
    """Say that nothing matched, and why that may be."""
    when = f" since {rfc3339(from_ms(since))}" if since is not None else ""
    if not schedules:
        return f"No occurrences recorded{when}."
    names = ", ".join(schedules)
    hints = "".join(did_you_mean(s, known) for s in schedules if s not in known)
    return f"No occurrences of {names} recorded{when}{hints}."


def entry_json(e: HistoryEntry) -> dict[str, Any]:
    """Return the JSON object of one occurrence (``history --json``, ``last_occurrence``)."""
    nominal = from_ms(e.scheduled_for)
    return {
        "schedule": e.schedule_id,
        "occurrence": rfc3339(nominal),
        "timezone": e.zone,
        "local": nominal.astimezone(_zone(e.zone)).isoformat(timespec="seconds"),
        "outcome": e.status,
        "reason": e.reason,  # the ledger keeps none for a fired occurrence
        "instance": e.instance,
        "rows": e.rows,
        "counts": e.counts,
        "first_delivery_s": _seconds(e.first_delivered_at, e.scheduled_for),
        "last_delivery_s": _seconds(e.last_delivered_at, e.scheduled_for),
    }


def table(entries: list[HistoryEntry]) -> list[str]:
    """Render occurrences as an aligned table, its header first."""
    rows = [_HEADER, *(_cells(e) for e in entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    right = {3, 4, 5}  # numbers line up on the right
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return lines


def _cells(e: HistoryEntry) -> tuple[str, ...]:
    local = from_ms(e.scheduled_for).astimezone(_zone(e.zone))
    now = ", ".join(f"{n:,} {state}" for state, n in e.counts.items() if n)
    note = "; ".join(part for part in (now, e.reason) if part)
    # With its offset: the list is in UTC order, which local times of several zones are not.
    return (local.isoformat(sep=" ", timespec="seconds"), f"{e.schedule_id}@{e.zone}", e.status,
            f"{e.rows:,}", _after(e.first_delivered_at, e.scheduled_for),
            _after(e.last_delivered_at, e.scheduled_for), instance_label(e.instance),
            note or "-")


def _seconds(at: int | None, nominal: int) -> float | None:
    return None if at is None else round((at - nominal) / 1000, 3)


def _after(at: int | None, nominal: int) -> str:
    """Format how long after the nominal time a delivery came: 0.4 s, 42 s, 12 min, 3 h."""
    if at is None:
        return "-"
    seconds = (at - nominal) / 1000
    if abs(seconds) < 10:
        return f"{seconds:.1f} s"
    if abs(seconds) < 120:
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _zone(name: str) -> tzinfo:
    # A zone this machine's tz database lacks (the ledger may come from another machine):
    # the time is still right, in UTC.
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder
        return UTC


def instance_label(name: str | None) -> str:
    """Name who fired or skipped an occurrence, short: ``host pid 4242``, ``fire by ada``.

    ``send by ada`` for an event of `eventcron send`.
    """
    from eventcron.ledger import Owner

    if name is None:
        return "-"  # recorded by an eventcron older than this column
    owner = Owner.parse(name)
    if owner is not None:
        return f"{owner.host} pid {owner.pid}"
    if name.startswith((BY_HAND, SENT_BY_HAND)):
        return name.removeprefix("eventcron ").split(" on ", 1)[0]
    return name


def by_hand_identity(command: str = BY_HAND) -> str:
    """Return who `eventcron fire` (or ``command``: `eventcron send`) is, for its fire records.

    ``eventcron fire by USER on HOST pid N``: the operator's login name (or user id where
    the system has none) says who sent an occurrence by hand.
    """
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no password entry (a bare container)
        user = f"uid {os.getuid()}"
    return f"{command} by {user} on {socket.gethostname()} pid {os.getpid()}"
