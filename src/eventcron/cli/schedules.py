"""Commands about the schedule file itself: validate, next, schema."""

from __future__ import annotations

import argparse
import json
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventcron import campaign, config
from eventcron.cli.common import config_path, load
from eventcron.cli.output import EXIT_OK, Failure, UsageError, count, err, local_iso, out
from eventcron.clock import SystemClock, rfc3339
from eventcron.config.audience import Member, check_zone
from eventcron.config.schema import schema
from eventcron.firing import plan
from eventcron.timing import CronExpr, CronSyntaxError, CronTiming, fires_after


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a schedule file and summarize it."""
    path = Path(args.file) if args.file else config_path(args)
    cfg = load(args, Path(args.file) if args.file else None)
    enabled = sum(1 for s in cfg.schedules if s.enabled)
    # Named audiences and schedules' own inline lists: the audiences `run` sends to.
    audiences = {id(a): a for a in (*cfg.audiences.values(), *(s.audience for s in cfg.schedules))}
    users = sum(a.size for a in audiences.values())
    out(f"{path}: valid: {count(len(cfg.schedules), 'schedule')} ({enabled:,} enabled),"
         f" {count(len(audiences), 'audience')} ({count(users, 'user')}).")
    _warn_never_firing(cfg)
    for warning in campaign.warnings(cfg):
        err(warning)
    return EXIT_OK


def _warn_never_firing(cfg: config.Config) -> None:
    for warning in plan.never_firing(cfg, SystemClock().now()):
        err(warning)


def cmd_next(args: argparse.Namespace) -> int:
    """List upcoming fire times of a cron expression or of the file's schedules."""
    after: datetime = args.after or SystemClock().now()
    if args.cron is not None:
        if args.schedule or args.user or args.all:
            raise UsageError("--cron cannot be combined with --schedule, --user or --all")
        fires = _next_cron(args.cron, args.timezone or config.DEFAULT_ZONE, after, args.count)
    else:
        if args.timezone:
            raise UsageError("--timezone goes with --cron; schedules carry their own zone")
        fires = _next_schedules(args, after)
    if args.json:
        out(json.dumps([_fire_json(f, args.user) for f in fires], indent=2))
        return EXIT_OK
    _print_fires(fires, args.user)
    return EXIT_OK


def _next_cron(expr: str, zone: str, after: datetime, count: int) -> list[plan.Fire]:
    problem = check_zone(zone)
    if problem:
        raise Failure(f"--timezone: {problem}")
    try:
        cron = CronExpr.parse(expr)
    except CronSyntaxError as e:
        raise Failure(f"bad cron expression {expr!r}: {e}") from None
    timing = CronTiming(cron, zoneinfo.ZoneInfo(zone))
    out: list[plan.Fire] = []
    for t in fires_after(timing, after):
        out.append(plan.Fire("", zone, t, t))
        if len(out) >= count:
            break
    return out


def _next_schedules(args: argparse.Namespace, after: datetime) -> list[plan.Fire]:
    cfg = load(args)
    _warn_never_firing(cfg)
    schedules = list(cfg.schedules)
    if args.schedule:
        unknown = [s for s in args.schedule if cfg.schedule(s) is None]
        if unknown:
            known = ", ".join(s.id for s in cfg.schedules) or "none"
            raise Failure(f"no schedule {unknown[0]!r} in {cfg.path} (it has: {known}).")
        schedules = [s for s in schedules if s.id in args.schedule]
    # The daemon's own rules, so that what `next` says is what `run` does.
    rules = campaign.Rules(cfg)
    expires_after = timedelta(seconds=cfg.delivery.expires_after)
    fires: list[plan.Fire] = []
    found_user = False
    for s in schedules:
        if not s.enabled:
            continue
        member: Member | None = None
        if args.user is not None:
            member = s.audience.find(args.user)
            if member is None:
                continue
            found_user = True
        fires.extend(plan.upcoming(s, after, args.count, member, rules=rules,
                                   expires_after=expires_after, everyone_skipped=args.all))
    if args.user is not None and not found_user:
        raise Failure(f"no enabled schedule in {cfg.path} sends to user {args.user!r}.")
    return fires


def _fire_json(f: plan.Fire, user: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "schedule": f.schedule or None,
        "utc": rfc3339(f.nominal),
        "local": local_iso(f.local()),
        "timezone": f.zone,
    }
    if f.schedule:  # a bare --cron has no rules to skip it
        item["skipped"] = f.skipped
    if user is not None:
        item["app_user_id"] = user
        item["send_at"] = rfc3339(f.send_at) if f.send_at.microsecond == 0 else (
            f.send_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        item["expired"] = f.expired
    return item


def _print_fires(fires: list[plan.Fire], user: str | None) -> None:
    if not fires:
        out("No upcoming fires.")
        return
    current: tuple[str, str] | None = None
    for f in fires:
        if f.schedule and (f.schedule, f.zone) != current:
            current = (f.schedule, f.zone)
            out(f"{f.schedule} ({f.zone})")
        local = f.local()
        line = f"  {local:%a %Y-%m-%d %H:%M:%S} {local.tzname()} ({local:%z})  {rfc3339(f.nominal)}"
        if f.skipped is not None:
            line += f"  skipped: {f.skipped}"
        elif f.expired is not None:
            line += f"  expired: {f.expired}"
        elif f.held:
            line += f"  {_held(f)}"
        elif user is not None and f.send_at != f.nominal:
            line += f"  sent {(f.send_at - f.nominal).total_seconds():.3f}s later (jitter)"
        out(line)


def _held(f: plan.Fire) -> str:
    """Say until when quiet hours hold a user's event, in the recipient's zone."""
    nominal = f.local()
    until = f.send_at.astimezone(zoneinfo.ZoneInfo(f.zone))
    days = (until.date() - nominal.date()).days
    day = "" if days == 0 else " the next day" if days == 1 else f" on {until:%a %Y-%m-%d}"
    return f"held by quiet hours until {until:%H:%M} {until.tzname()}{day}"


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the schedule file."""
    out(json.dumps(schema(), indent=2))
    return EXIT_OK
