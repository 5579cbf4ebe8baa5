"""Operator commands on the ledger: status, deliveries, replay, fire."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import zoneinfo
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventcron import config
from eventcron.campaign import Rules
from eventcron.cli.common import database_url, ledger_only, load, open_ledger
from eventcron.cli.output import EXIT_OK, Failure, count, err, out
from eventcron.clock import SystemClock, from_ms, rfc3339, to_ms
from eventcron.firing import plan
from eventcron.problems import did_you_mean, quote_list
from eventcron.states import SEND_SCHEDULE, STATUSES

if TYPE_CHECKING:
    from eventcron.firing.firer import Enqueued
    from eventcron.ledger import Filters, Instance, Ledger, Row


def cmd_status(args: argparse.Namespace) -> int:
    """Show who is running, schedules with their last and next fire, counts, endpoint health.

    It opens with the instances' liveness (their heartbeat rows); ``--json`` adds them as
    ``instances``, and each schedule's latest occurrence as ``last_occurrence``. Only the
    ledger is needed: when the schedule file is invalid (or, with ``--database``, absent)
    it shows what the ledger knows, after one warning line if the file is invalid. The
    events of `eventcron send` (schedule ``-``, in no plan) are counted apart: ``sends``.
    """
    from eventcron.cli.history import entry_json
    from eventcron.ledger import display_url

    now = SystemClock().now()
    with ledger_only(args, need_config=True, from_invalid_file=True) as (ledger, target):
        instances = ledger.instances()
        counts = ledger.counts()
        by_schedule = ledger.counts_by_schedule()
        last_fired = ledger.last_fired()
        latest = {sid: entry_json(e) for sid, e in ledger.latest_occurrences().items()}
        health = ledger.health()
        known = ledger.known_schedules() if target.cfg is None else set()
    now_ms = to_ms(now)
    cfg = target.cfg
    if target.problems:
        shown = display_url(target.url)
        err(f"eventcron: warning: {target.invalid()}; showing what the ledger {shown}"
             " knows.")
    none = dict.fromkeys(STATUSES, 0)
    schedules: list[dict[str, Any]] = []
    # The next occurrence that sends: one skipped for everyone (a holiday) is passed over.
    rules = Rules(cfg) if cfg is not None else None
    for s in cfg.schedules if cfg is not None else ():
        upcoming = plan.upcoming(s, now, 1, rules=rules) if s.enabled else []
        last = last_fired.get(s.id)
        schedules.append({
            "id": s.id, "kind": s.kind, "timezone": s.timezone, "enabled": s.enabled,
            "event_type": s.event_type, "users": s.audience.size,
            "last_fire": rfc3339(from_ms(last)) if last is not None else None,
            "next_fire": rfc3339(upcoming[0].nominal) if upcoming else None,
            "counts": by_schedule.get(s.id, none), "last_occurrence": latest.get(s.id),
        })
    if cfg is None:  # what the ledger knows: no kind, zone, audience or next fire
        # The sends are in no plan: listed apart, below and under "sends".
        for sid in sorted({*by_schedule, *last_fired, *known, *latest} - {SEND_SCHEDULE}):
            last = last_fired.get(sid)
            schedules.append({
                "id": sid, "kind": None, "timezone": None, "enabled": None,
                "event_type": None, "users": None,
                "last_fire": rfc3339(from_ms(last)) if last is not None else None,
                "next_fire": None, "counts": by_schedule.get(sid, none),
                "last_occurrence": latest.get(sid),
            })
    token_info = _token_status(cfg.endpoint.token, now) if cfg is not None else None
    endpoint = {
        "url": cfg.endpoint.url if cfg is not None else None,
        "last_delivered_at": rfc3339(from_ms(health.last_delivered_at))
        if health.last_delivered_at else None,
        "last_error": health.last_error,
        "last_error_at": rfc3339(from_ms(health.last_error_at)) if health.last_error_at else None,
        "token": token_info,
    }
    file = ({"path": str(target.path), "valid": cfg is not None, "problems": target.problems}
            if cfg is not None or target.problems else None)
    if args.json:
        out(json.dumps({"instances": [_instance_json(i, now_ms) for i in instances],
                        "schedules": schedules, "counts": counts,
                        "sends": by_schedule.get(SEND_SCHEDULE, none), "endpoint": endpoint,
                        "file": file}, indent=2, ensure_ascii=False))
        return EXIT_OK
    out(liveness(instances, now_ms))
    note = _plan_note(instances, now_ms, cfg.sha256) if cfg is not None else None
    if note:
        out(f"  {note}")
    out(f"Schedules in {cfg.path}:" if cfg is not None else "Schedules in the ledger:")
    for item in schedules:
        c = item["counts"]
        tally = (f"{c['pending']:,} pending, {c['delivered']:,} delivered,"
                 f" {c['failed']:,} failed, {c['expired']:,} expired")
        if c.get("suppressed"):
            tally += f", {c['suppressed']:,} suppressed"
        latest_one = item["last_occurrence"]
        if latest_one is not None and latest_one["outcome"] == "skipped":
            tally += (f"; latest occurrence {latest_one['occurrence']} skipped:"
                      f" {latest_one['reason']}")
        if cfg is None:
            out(f"  {item['id']}: last fire {item['last_fire'] or 'never'}; {tally}")
            continue
        state = "" if item["enabled"] else " (disabled)"
        out(f"  {item['id']}{state}: {item['kind']}, {item['timezone']},"
             f" {count(item['users'], 'user')}; last fire {item['last_fire'] or 'never'}, next"
             f" {item['next_fire'] or 'none'}; {tally}")
    sends = by_schedule.get(SEND_SCHEDULE)
    if sends is not None:
        last = last_fired.get(SEND_SCHEDULE)
        when = rfc3339(from_ms(last)) if last else "never"
        out(f"  {SEND_SCHEDULE} (eventcron send): last send {when};"
            f" {sends['delivered']:,} delivered, {sends['failed']:,} failed")
    out("Ledger: " + ", ".join(f"{n:,} {s}" for s, n in counts.items()))
    out(f"Endpoint: {endpoint['url'] or 'unknown without a valid schedule file'}")
    out(f"  last delivery: {endpoint['last_delivered_at'] or 'none yet'}")
    if health.last_error:
        out(f"  last error: {health.last_error} at {endpoint['last_error_at']}")
    if token_info is not None:
        out(f"  token: {token_info.get('summary') or token_info.get('problem')}")
    return EXIT_OK


def _token_status(source: config.TokenSource, now: datetime) -> dict[str, Any]:
    """Describe the token's source and expiry for `status`, or the problem loading it."""
    from eventcron.delivery import auth

    info: dict[str, Any] = {"source": source.describe()}
    try:
        token = auth.load_token(source)
    except auth.TokenError as e:
        info["problem"] = str(e)
    else:
        info["expires_at"] = rfc3339(token.expires_at) if token.expires_at else None
        info["expired"] = token.expired(now)
        info["summary"] = auth.describe_expiry(token, now)
    return info


def _filters_of(args: argparse.Namespace) -> Filters:
    from eventcron.ledger import Filters

    return Filters(
        status=tuple(args.status or ()), schedule=tuple(args.schedule or ()),
        user=tuple(args.user or ()),
        since=to_ms(args.since) if args.since is not None else None)


def _row_json(r: Row) -> dict[str, Any]:
    return {
        "event_id": r.event_id, "schedule": r.schedule_id, "app_user_id": r.app_user_id,
        "event_type": r.event_type, "scheduled_for": rfc3339(from_ms(r.scheduled_for)),
        "status": r.status, "attempts": r.attempts,
        "next_attempt_at": rfc3339(from_ms(r.next_attempt_at)) if r.status == "pending" else None,
        "last_status_code": r.last_status_code, "last_error": r.last_error,
        "delivered_at": rfc3339(from_ms(r.delivered_at)) if r.delivered_at else None,
        "data": json.loads(r.data),
    }


def cmd_deliveries(args: argparse.Namespace) -> int:
    """List ledger rows."""
    with ledger_only(args) as (ledger, _):
        rows = ledger.rows(_filters_of(args), limit=args.limit or None)
    if args.json:
        out(json.dumps([_row_json(r) for r in rows], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        out("No deliveries match.")
        return EXIT_OK
    out(f"{'SCHEDULED (UTC)':<20}  {'STATUS':<10}  {'TRIES':>5}  {'CODE':>4}  SCHEDULE / USER /"
         " EVENT TYPE / LAST ERROR")
    for r in rows:
        code = str(r.last_status_code) if r.last_status_code is not None else "-"
        # A suppressed row's last error is why the campaign rules kept it back.
        error = f"  {r.last_error}" if r.last_error and r.status != "delivered" else ""
        out(f"{rfc3339(from_ms(r.scheduled_for)):<20}  {r.status:<10}  {r.attempts:>5}"
             f"  {code:>4}  {r.schedule_id} / {r.app_user_id} / {r.event_type}{error}")
    if args.limit and len(rows) == args.limit:
        out(f"(the newest {args.limit:,}; --limit 0 shows all)", sys.stderr)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Put failed or expired rows back to pending (suppressed ones too, when asked)."""
    filters = _filters_of(args)
    include: bool = args.include_suppressed
    if "suppressed" in filters.status and not include:
        raise Failure("suppressed rows are replayed only with --include-suppressed: the"
                      " campaign rules kept them from being sent (see their last error).")
    if SEND_SCHEDULE in filters.schedule:
        raise Failure(f"the events of `eventcron send` (schedule {SEND_SCHEDULE}) are never"
                      " replayed: each is sent once, by hand; run `eventcron send` again to"
                      " resend one.")
    with ledger_only(args, need_config=True) as (ledger, target):
        _in_ledger(ledger, filters.schedule, target.url)
        # Replayed rows expire after the file's delivery.expires_after, or the default.
        policy = target.cfg.delivery if target.cfg is not None else config.Delivery()
        if target.problems and not args.dry_run:
            err(f"eventcron: warning: {target.invalid()}; replayed events expire"
                 f" {config.format_duration(policy.expires_after)} from now, the default.")
        now = SystemClock().now()
        n = ledger.replay(filters, to_ms(now), round(policy.expires_after * 1000),
                          dry_run=args.dry_run, include_suppressed=include)
        sends = ledger.sends_not_replayed(filters, include_suppressed=include)
    what = ("/".join(filters.status) if filters.status else
            "failed, expired or suppressed" if include else "failed or expired")
    if args.dry_run:
        out(f"{count(n, f'{what} event')} would be replayed (dry run; nothing changed).")
    else:
        # Rules still apply to them: an opted-out user's row is suppressed again, and quiet
        # hours hold one until they end.
        unless = ", unless the campaign rules still keep them back" if include else ""
        out(f"{count(n, f'{what} event')} {'is' if n == 1 else 'are'} pending again; a running"
            f" eventcron sends {'it' if n == 1 else 'them'} now{unless}.")
    if sends:
        out(f"{count(sends, f'{what} event')} of `eventcron send` (schedule {SEND_SCHEDULE})"
            f" {'is' if sends == 1 else 'are'} left as {'it is' if sends == 1 else 'they are'}:"
            " a send goes once; run `eventcron send` again to resend.")
    return EXIT_OK


def _in_ledger(ledger: Ledger, schedules: tuple[str, ...], url: str) -> None:
    """Fail when ``--schedule`` names a schedule the ledger has no rows of (a typo, likely)."""
    from eventcron.ledger import display_url

    missing = [s for s in schedules if not any(ledger.counts(s).values())]
    if not missing:
        return
    known = sorted({*ledger.counts_by_schedule(), *ledger.known_schedules()})
    hints = "".join(did_you_mean(s, known) for s in missing)
    raise Failure(f"no schedule {quote_list(missing)} in the ledger {display_url(url)}{hints};"
                  f" it knows: {', '.join(known) or 'none'}.")


def cmd_fire(args: argparse.Namespace) -> int:
    """Enqueue one occurrence of a schedule now, through the ledger's unique key."""
    import asyncio

    cfg = load(args)
    schedule = cfg.schedule(args.schedule)
    if schedule is None:
        known = ", ".join(s.id for s in cfg.schedules) or "none"
        hint = did_you_mean(args.schedule, [s.id for s in cfg.schedules])
        raise Failure(f"no schedule {args.schedule!r} in {cfg.path}{hint}; it has: {known}.")
    if not schedule.enabled:
        raise Failure(f"schedule {schedule.id!r} is disabled in {cfg.path}; a running instance"
                      " would cancel its rows. Enable it first.")
    clock = SystemClock()
    now = clock.now()
    try:
        picked = plan.occurrences_to_fire(schedule, now, args.occurrence)
    except plan.NoSuchOccurrence as e:
        raise Failure(str(e)) from None
    for _job, nominal in picked:
        if nominal > now:
            raise Failure(f"{rfc3339(nominal)} is still to come; the schedule fires it by"
                          " itself then (`eventcron next` lists when).")
        expires = nominal + timedelta(seconds=cfg.delivery.expires_after)
        if expires <= now:
            raise Failure(f"the occurrence at {rfc3339(nominal)} expired at {rfc3339(expires)}"
                          f" (delivery.expires_after,"
                          f" {config.format_duration(cfg.delivery.expires_after)}): its events"
                          " would never be sent.")
    ledger = open_ledger(database_url(args, cfg))
    counts: list[Enqueued]
    if args.dry_run:
        try:
            counts = [_count_fire(ledger, job, nominal) for job, nominal in picked]
        finally:
            ledger.close()
    else:
        counts, instances = asyncio.run(_fire_now(ledger, cfg, picked))
    for (job, nominal), (users, added) in zip(picked, counts, strict=True):
        local = nominal.astimezone(zoneinfo.ZoneInfo(job.zone))
        verb, had = ("would add", "present") if args.dry_run else ("added", "already existed")
        out(f"{schedule.id} at {rfc3339(nominal)} ({local.isoformat(timespec='seconds')}"
             f" {job.zone}): {verb} {count(added, 'new row')};"
             f" {count(users - added, 'row')} {had}.")
    if args.dry_run:
        out("Dry run: nothing was written.")
        return EXIT_OK
    out(_who_sends(instances, to_ms(clock.now()), cfg.sha256))
    return EXIT_OK


def _count_fire(ledger: Ledger, job: plan.Job, nominal: datetime) -> Enqueued:
    from eventcron.firing.firer import Enqueued

    members = (m.id for m in job.schedule.members(job.zone))
    users = present = 0
    while chunk := list(itertools.islice(members, 5_000)):  # streamed, as a fire is
        users += len(chunk)
        present += ledger.count_present(job.schedule.id, job.schedule.event_type,
                                        to_ms(nominal), chunk)
    return Enqueued(users, users - present)


async def _fire_now(ledger: Ledger, cfg: config.Config,
                    picked: list[tuple[plan.Job, datetime]]
                    ) -> tuple[list[Enqueued], list[Instance]]:
    from eventcron.cli.history import by_hand_identity
    from eventcron.firing.firer import Firer
    from eventcron.ledger import LedgerThread

    # The daemon's own firing path: batches, the fire record, progress lines, the unique key.
    db = LedgerThread(ledger)
    try:
        # Written to the fire records it opens: `history` shows who sent an occurrence.
        # The campaign rules too: opt-outs, per-user skips, quiet hours and the cap.
        firer = Firer(db, SystemClock(), cfg.delivery, on_enqueued=lambda: None,
                      instance=by_hand_identity(), rules=Rules(cfg))
        counts = [await firer.fire(job, nominal, "eventcron fire", by_hand=True)
                  for job, nominal in picked]
        return counts, await db.call(ledger.instances)
    finally:
        db.close()


def _who_sends(instances: list[Instance], now_ms: int, plan_sha256: str) -> str:
    """Say who runs on the ledger (as `status` opens) and whether they will send the rows."""
    lines = [liveness(instances, now_ms)]
    alive = [i for i in instances if i.alive(now_ms)]
    if not alive:
        start = "`eventcron run` starts" if not instances else "one starts"
        lines.append(f"No instance is running: the rows wait pending until {start}.")
        return "\n".join(lines)
    lines.append("A running instance will send them.")
    if any(i.paused for i in alive):
        lines.append("But sending is paused: the endpoint refused the token (see `eventcron"
                     " status`).")
    note = _plan_note(instances, now_ms, plan_sha256)
    if note:
        lines.append(note)
    return "\n".join(lines)


def liveness(instances: list[Instance], now_ms: int) -> str:
    """Say in one line who runs on this ledger, from the heartbeat rows (newest first).

    ``running: 1 instance (HOST pid 4242, up 3 h, last seen 2 s ago, plan 3f2a9c1e…)``, or
    ``not running: last seen … (stopped)``, or ``… (no heartbeat for 5 min: crashed or cut
    off)``, or that no instance ever used the ledger. `status` opens with it; `fire` says it.
    """
    alive = [i for i in instances if i.alive(now_ms)]
    if alive:
        each = "; ".join(
            f"{i.host} pid {i.pid}, up {_ago(now_ms - i.started_at)}, last seen"
            f" {_ago(now_ms - i.last_seen)} ago, plan {i.plan_sha256[:8]}…"
            + (", paused: token refused" if i.paused else "") for i in alive)
        return f"running: {count(len(alive), 'instance')} ({each})"
    if not instances:
        return "not running: no instance has used this ledger yet"
    last = instances[0]
    seen = from_ms(last.last_seen).strftime("%Y-%m-%d %H:%M UTC")
    why = ("stopped" if last.stopped_at is not None else
           f"no heartbeat for {_ago(now_ms - last.last_seen)}: crashed or cut off")
    return f"not running: last seen {seen}, {last.host} pid {last.pid} ({why})"


def _plan_note(instances: list[Instance], now_ms: int, plan_sha256: str) -> str | None:
    """Warn when no running instance runs this version of the schedule file."""
    alive = [i for i in instances if i.alive(now_ms)]
    if not alive or any(i.plan_sha256 == plan_sha256 for i in alive):
        return None
    who, they = (("the running instance runs", "it loads") if len(alive) == 1
                 else ("the running instances run", "they load"))
    return (f"Note: {who} another version of the schedule file (plan"
            f" {alive[0].plan_sha256[:8]}, this file {plan_sha256[:8]}); until {they}"
            " it, rows of a schedule that version lacks are cancelled, not sent.")


def _instance_json(i: Instance, now_ms: int) -> dict[str, Any]:
    """Return the JSON object of an instance's heartbeat row (``status --json``)."""
    return {"name": i.name, "host": i.host, "pid": i.pid, "version": i.version,
            "started_at": rfc3339(from_ms(i.started_at)),
            "last_seen": rfc3339(from_ms(i.last_seen)),
            "stopped_at": rfc3339(from_ms(i.stopped_at)) if i.stopped_at is not None else None,
            "alive": i.alive(now_ms), "paused": i.paused, "plan_sha256": i.plan_sha256}


def _ago(ms_: int) -> str:
    seconds = max(0, ms_ // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
