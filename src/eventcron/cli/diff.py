"""``eventcron diff``: what applying an edited schedule file will do, before it is applied.

Compares FILE with the plan last applied (kept in the ledger's audit log) or with
``--against OLD_FILE``, over the next ``--days``: schedules added, removed and changed, the
occurrences each gains or loses with the events they send (after each plan's skip dates,
holidays and opt-outs), and the pending events the change cancels. Exit status as
diff(1): 0 no difference, 1 differences, 2 trouble.
"""

from __future__ import annotations

import argparse
import json
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from eventcron import config
from eventcron.campaign import Rules
from eventcron.cli.common import config_path, explicit_database, load, open_ledger
from eventcron.cli.history import instance_label
from eventcron.cli.output import Failure, count, err, out
from eventcron.clock import SystemClock, from_ms, rfc3339
from eventcron.firing.plandiff import (
    Occurrences,
    PlanChange,
    Shift,
    compare,
    occurrences,
    shift,
    summarize,
)
from eventcron.problems import InvalidInput, first_line

EXIT_SAME: Final = 0
EXIT_DIFFERENT: Final = 1
EXIT_TROUBLE: Final = 2  # as diff(1): the comparison could not be made
SHOWN_PER_SCHEDULE: Final = 5  # occurrences listed per schedule in the text form


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare a schedule file with the plan last applied (or another file).

    Every failure exits 2, as diff(1)'s trouble: 1 means differences, never an error.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _diff(args)
    except Failure as e:
        raise Failure(str(e), EXIT_TROUBLE) from None
    except SQLAlchemyError as e:
        raise Failure(f"the ledger failed: {first_line(e)}.", EXIT_TROUBLE) from None


def _diff(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    path = Path(args.file) if args.file else config_path(args)
    new = load(args, Path(args.file) if args.file else None, code=EXIT_TROUBLE)
    database = explicit_database(args) or new.database
    if args.against:
        old = load(args, Path(args.against), code=EXIT_TROUBLE)
        against = f"{args.against}"
    else:
        old, against = _applied_plan(database)
    end = now + timedelta(days=args.days)
    change = compare(summarize(old), summarize(new))
    shifts: dict[str, Shift] = {}
    occurrences_in: dict[str, Occurrences] = {}  # the new plan's, for what changed in place
    # Each plan's own rules: a skip or opt-out the edit adds changes its events.
    new_rules, old_rules = Rules(new), Rules(old)
    new_expiry, old_expiry = (timedelta(seconds=c.delivery.expires_after) for c in (new, old))
    for sid in sorted({*change.added, *change.removed, *change.changed}):
        occurrences_in[sid] = occurrences(new.schedule(sid), now, end, new_rules, new_expiry)
        shifts[sid] = shift(occurrences(old.schedule(sid), now, end, old_rules, old_expiry),
                            occurrences_in[sid])
    leaving = sorted({*change.removed, *change.disabled})
    pending = _pending(database, leaving) if leaving else {}
    report = _report(change, shifts, pending, len(new.schedules))
    if args.json:
        out(json.dumps(report, indent=2))
    else:
        _print(change, shifts, title=f"{path} against {against}, over the next"
               f" {count(args.days, 'day')}:", pending=pending, report=report, new=new, old=old,
               occurrences_in=occurrences_in)
    return EXIT_DIFFERENT if not change.empty else EXIT_SAME


def _applied_plan(database: str) -> tuple[config.Config, str]:
    try:
        ledger = open_ledger(database, code=EXIT_TROUBLE)
    except Failure as e:
        raise Failure(f"{e} No plan can have been applied with it yet; compare with a file:"
                      " --against OLD_FILE.", EXIT_TROUBLE) from None
    try:
        record = ledger.last_applied_plan()
    finally:
        ledger.close()
    if record is None or record.content is None:
        raise Failure("the ledger has no applied plan yet (no instance has run with it);"
                      " compare with a file: --against OLD_FILE.", EXIT_TROUBLE)
    when = from_ms(record.at).strftime("%Y-%m-%d %H:%M UTC")
    about = (f"the plan applied {when} by {instance_label(record.instance)}"
             f" (sha256 {record.sha256[:8]}…)")
    try:
        old = config.load_bytes(record.content.encode(), Path(record.file))
    except InvalidInput as e:
        err(e.render())
        raise Failure(f"{about} no longer loads as it was (did a file it names change or"
                      " go?); compare with a file: --against OLD_FILE.", EXIT_TROUBLE) from None
    return old, about


def _pending(database: str, schedule_ids: list[str]) -> dict[str, int] | None:
    """Pending events of the schedules leaving the plan; None when no ledger can say."""
    try:
        ledger = open_ledger(database)
    except Failure as e:
        err(f"eventcron: note: pending events unknown: {e}")
        return None
    try:
        return ledger.pending_counts(schedule_ids)
    finally:
        ledger.close()


def _report(change: PlanChange, shifts: dict[str, Shift], pending: dict[str, int] | None,
            schedules: int) -> dict[str, Any]:
    def listed(pairs: tuple[tuple[datetime, int], ...]) -> list[dict[str, Any]]:
        return [{"occurrence": rfc3339(t), "events": n} for t, n in pairs]

    return {
        "schedules": {"added": list(change.added), "removed": list(change.removed),
                      "changed": {k: list(v) for k, v in change.changed.items()},
                      "unchanged": schedules - len(change.added) - len(change.changed)},
        "occurrences": {sid: {"added": listed(s.added), "removed": listed(s.removed)}
                        for sid, s in shifts.items()},
        "events_added": sum(n for s in shifts.values() for _, n in s.added),
        "events_removed": sum(n for s in shifts.values() for _, n in s.removed),
        "pending_cancelled": None if pending is None else sum(pending.values()),
    }


def _print(change: PlanChange, shifts: dict[str, Shift], *, title: str,
           pending: dict[str, int] | None, report: dict[str, Any], new: config.Config,
           old: config.Config, occurrences_in: dict[str, Occurrences]) -> None:
    out(title)
    if change.empty:
        out("no difference.")
        return
    for sid in sorted(shifts):
        s = shifts[sid]
        sign = "+" if sid in change.added else "-" if sid in change.removed else "~"
        what = sid
        if sid in change.changed:
            verb, what = change.label(sid)
            what = what if verb == "changed" else f"{what}, {verb}"
        gained = sum(n for _, n in s.added)
        lost = sum(n for _, n in s.removed)
        parts = []
        if s.added:
            parts.append(f"+{count(len(s.added), 'occurrence')} ({count(gained, 'event')})")
        if s.removed:
            parts.append(f"-{count(len(s.removed), 'occurrence')} ({count(lost, 'event')})")
        if pending and pending.get(sid):
            parts.append(f"{count(pending[sid], 'pending event')} cancelled")
        if not parts:
            # Same times, same audience: what changed (data, description…) rides along.
            n = len(occurrences_in.get(sid, ()))
            parts.append(f"the same {count(n, 'occurrence')}, sent as changed" if n
                         else "no occurrence in these days")
        out(f"{sign} {what}: {', '.join(parts)}")
        schedule = new.schedule(sid) or old.schedule(sid)
        zone = schedule.timezone if schedule and schedule.timezone != "user" else "UTC"
        for mark, pairs in (("+", s.added), ("-", s.removed)):
            for t, n in pairs[:SHOWN_PER_SCHEDULE]:
                # With the offset: the hour repeated when DST ends shows twice, told apart.
                local = t.astimezone(zoneinfo.ZoneInfo(zone)).isoformat(sep=" ",
                                                                        timespec="seconds")
                out(f"    {mark} {local} {zone}  {count(n, 'event')}")
            if len(pairs) > SHOWN_PER_SCHEDULE:
                out(f"    {mark} … and {len(pairs) - SHOWN_PER_SCHEDULE:,} more")
    unchanged = report["schedules"]["unchanged"]
    if unchanged:
        out(f"= {count(unchanged, 'schedule')} unchanged")
    cancelled = report["pending_cancelled"]
    out(f"events: +{report['events_added']:,}, -{report['events_removed']:,};"
        f" pending events cancelled: {'unknown' if cancelled is None else f'{cancelled:,}'}")
