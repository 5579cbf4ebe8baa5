"""Command line: argument parsing, one small function per subcommand, exit codes.

Exit codes: 0 success, 1 failure or invalid input, 2 usage error, 78 a configuration that
cannot start (EX_CONFIG). Errors are printed as sentences with their cause, never as a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import uuid
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from eventcron import __version__, auth, config, logs, plan
from eventcron.audience import Member, check_id, check_zone
from eventcron.clock import SystemClock, from_ms, rfc3339, to_ms
from eventcron.daemon import Daemon
from eventcron.demo import run_demo
from eventcron.firing import Enqueued, Firer
from eventcron.ledger import STATUSES, Filters, Instance, Ledger, LedgerError, LedgerThread, Row
from eventcron.metrics import ListenError, parse_listen
from eventcron.problems import InvalidInput, did_you_mean
from eventcron.schema import schema
from eventcron.sender import Sender
from eventcron.sink import Faults, serve
from eventcron.timing import CronExpr, CronSyntaxError, CronTiming

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 78  # sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus uses it
DEFAULT_NEXT_COUNT: Final = 5  # fires listed per schedule
DEFAULT_LIST_LIMIT: Final = 50  # rows `deliveries` shows unless told otherwise


class UsageError(Exception):
    """Bad arguments: printed with the usage line, exit code 2."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        self.parser = parser


class Failure(Exception):
    """A command could not do its job: printed as a sentence, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the command; SUPPRESS keeps a subcommand's absent option
    # from overwriting what was given before it.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help=f"schedule file (default: ${config.CONFIG_ENV} or"
                             f" ./{config.DEFAULT_CONFIG})")
    parser.add_argument("--database", metavar="URL", default=default,
                        help=f"ledger database URL (overrides the file and"
                             f" ${config.DATABASE_ENV})")
    parser.add_argument("--verbose", action="store_true", default=False if top else
                        argparse.SUPPRESS, help="log debug detail (never the token)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        default="text" if top else argparse.SUPPRESS,
                        help="log lines as text (default) or one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = _Parser(prog="eventcron", description="Send scheduled events to the Inbound"
                     " Events API: cron-exact timing, each occurrence once per user.")
    parser.add_argument("--version", action="version", version=f"eventcron {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]
                ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, top=False)
        p.set_defaults(func=func, parser=p)
        return p

    p = command("validate", "check a schedule file; print every problem", cmd_validate)
    p.add_argument("file", nargs="?", help="the schedule file (default: --config)")

    p = command("next", "show upcoming fire times", cmd_next)
    p.add_argument("--cron", metavar="EXPR", help="a bare cron expression instead of the file")
    p.add_argument("--timezone", metavar="TZ", help="zone for --cron (default UTC)")
    p.add_argument("--schedule", metavar="ID", action="append",
                   help="only this schedule (repeatable)")
    p.add_argument("--user", metavar="ID", help="fires for this user: their zone and jitter")
    p.add_argument("--count", metavar="N", type=_positive_int, default=DEFAULT_NEXT_COUNT,
                   help=f"fires per schedule (default {DEFAULT_NEXT_COUNT})")
    p.add_argument("--after", metavar="TIME", type=_rfc3339,
                   help="list times strictly after this RFC 3339 time (default now)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    command("schema", "print the JSON Schema of the schedule file", cmd_schema)

    p = command("run", "run the daemon: fire schedules, deliver, retry, record", cmd_run)
    p.add_argument("--metrics", metavar="ADDR", type=_listen,
                   help="serve /metrics and /healthz here (9108, 127.0.0.1:9108, [::1]:9108);"
                        " overrides metrics.listen")

    p = command("demo", "run the daemon against a built-in local receiver for a while",
                cmd_demo)
    p.add_argument("--duration", metavar="TIME", type=_duration, default=20.0,
                   help="how long to run (default 20s)")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder and ledger")

    p = command("send", "send one event now (the documented curl call)", cmd_send)
    p.add_argument("--user", metavar="ID", required=True, help="the app_user_id")
    p.add_argument("--event-type", metavar="TYPE", required=True, help="the event_type")
    p.add_argument("--data", metavar="JSON", default="{}", help="a JSON object (default {})")

    p = command("status", "schedules, ledger counts, endpoint health", cmd_status)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("deliveries", "list ledger rows, newest first", cmd_deliveries)
    _filters(p)
    p.add_argument("--limit", metavar="N", type=_non_negative_int, default=DEFAULT_LIST_LIMIT,
                   help=f"rows at most (default {DEFAULT_LIST_LIMIT}; 0 for all)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command("replay", "put failed or expired rows back to pending", cmd_replay)
    _filters(p, statuses=("failed", "expired"))
    p.add_argument("--dry-run", action="store_true", help="only count what would be replayed")

    p = command("fire", "enqueue one occurrence of a schedule for its whole audience now",
                cmd_fire)
    p.add_argument("schedule", metavar="SCHEDULE", help="the schedule's id")
    p.add_argument("--occurrence", metavar="TIME", type=_rfc3339,
                   help="the occurrence's nominal time, RFC 3339 (default: the latest one"
                        " not after now)")
    p.add_argument("--dry-run", action="store_true",
                   help="only count the rows it would add; write nothing")

    p = command("token", "show the token's claims and expiry; exit 1 if expired", cmd_token)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("sink", "run a local receiver that speaks the Inbound Events API", cmd_sink)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=_non_negative_int, default=8080,
                   help="port (default 8080; 0 picks a free one)")
    p.add_argument("--path", default="/api/v1/webhook/event", help="the endpoint path")
    p.add_argument("--secret", help="check HS256 signatures of tokens with this secret")
    p.add_argument("--record", metavar="FILE", help="append each request as a JSON line")
    p.add_argument("--fail-rate", type=_share, default=0.0, metavar="SHARE",
                   help="share of requests answered with --fail-status (0-1)")
    p.add_argument("--fail-status", type=int, default=503, metavar="CODE")
    p.add_argument("--throttle-rate", type=_share, default=0.0, metavar="SHARE",
                   help="share of requests answered 429 with Retry-After")
    p.add_argument("--retry-after", type=_duration, default=1.0, metavar="TIME")
    p.add_argument("--latency", type=_duration, default=0.0, metavar="TIME",
                   help="added before each answer")
    p.add_argument("--down-after", type=_duration, default=None, metavar="TIME",
                   help="stop listening this long after start")
    p.add_argument("--down-for", type=_duration, default=0.0, metavar="TIME")
    p.add_argument("--down-every", type=_duration, default=None, metavar="TIME",
                   help="repeat the outage this often")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    return parser


def _filters(p: argparse.ArgumentParser,
             statuses: Sequence[str] = STATUSES) -> None:
    p.add_argument("--status", action="append", choices=statuses,
                   help="only rows in this state (repeatable)")
    p.add_argument("--schedule", metavar="ID", action="append",
                   help="only this schedule (repeatable)")
    p.add_argument("--user", metavar="ID", action="append", help="only this user (repeatable)")
    p.add_argument("--since", metavar="TIME", type=_since,
                   help="occurrences at or after TIME (RFC 3339, or a duration ago: 2h)")


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> float:
    try:
        return config.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).rstrip(".")) from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _since(text: str) -> datetime:
    try:
        return SystemClock().now() - timedelta(seconds=config.parse_duration(text))
    except ValueError:
        return _rfc3339(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _rfc3339(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time such as 2026-12-01T09:00:00Z") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add Z or one such as +01:00")
    return value.astimezone(UTC)


# --- helpers -------------------------------------------------------------------------------


def _out(line: str = "", stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stdout)


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _config_path(args: argparse.Namespace) -> Path:
    return config.resolve_config_path(args.config)


def _load(args: argparse.Namespace, path: Path | None = None, *,
          code: int = EXIT_FAILURE) -> config.Config:
    path = path or _config_path(args)
    if not path.exists() and not path.is_symlink():
        raise Failure(f"there is no schedule file at {path}; pass --config FILE or set"
                      f" ${config.CONFIG_ENV}.", code)
    try:
        return config.load(path)
    except InvalidInput as e:
        _err(e.render())
        n = _problem_count(e)
        raise Failure(f"{path} is not valid: {n} problem{'s' if n != 1 else ''}.",
                      code) from None


def _problem_count(e: InvalidInput) -> int:
    return len(e.problems) + e.truncated


def _explicit_database(args: argparse.Namespace) -> str | None:
    """Return the ledger ``--database`` or ``$EVENTCRON_DATABASE_URL`` names, or None.

    Either may be a URL or a plain path to an SQLite file, relative to the current folder.
    """
    explicit = args.database or os.environ.get(config.DATABASE_ENV)
    if not explicit:
        return None
    where = "--database" if args.database else f"${config.DATABASE_ENV}"
    try:
        return config.ledger_url(str(explicit), Path.cwd())
    except ValueError as e:
        code = EXIT_CONFIG if args.command == "run" else EXIT_FAILURE
        raise Failure(f"{where}: {e}", code) from None


def _database_url(args: argparse.Namespace, cfg: config.Config | None) -> str:
    """``--database``, then ``$EVENTCRON_DATABASE_URL``, then the file, then the default."""
    explicit = _explicit_database(args)
    if explicit is not None:
        return explicit
    if cfg is not None:
        return cfg.database
    return config.default_database(Path.cwd())


@dataclass
class LedgerTarget:
    """The ledger a ledger-only command uses, and what it learnt of the schedule file."""

    url: str
    path: Path  # the schedule file looked at; it may not exist
    cfg: config.Config | None = None  # the file, when it was read and is valid
    problems: int = 0  # how many problems the file has, when it was read and is invalid

    def invalid(self) -> str:
        """Say that the file is invalid, with the problem count: part of a sentence."""
        n = self.problems
        return (f"{self.path} is not valid ({n} problem{'s' if n != 1 else ''}; `eventcron"
                " validate` lists them)")


def ledger_target(args: argparse.Namespace, *, need_config: bool = False,
                  from_invalid_file: bool = False) -> LedgerTarget:
    """Find the ledger of a command that only reads or edits it; never require a valid file.

    ``--database`` (or ``$EVENTCRON_DATABASE_URL``) names the ledger; the schedule file is
    then read only when ``need_config``, quietly: ``cfg`` is set when it is valid,
    ``problems`` counted when it is not, neither when there is none. Without them the file
    names the ledger, and a missing or invalid file is a :class:`Failure` suggesting
    ``--database``; with ``from_invalid_file``, the ``database`` key of an invalid file is
    used when that much of it can be read (:func:`config.database_of`).
    """
    path = _config_path(args)
    explicit = _explicit_database(args)
    exists = path.exists() or path.is_symlink()
    if explicit is not None:
        target = LedgerTarget(explicit, path)
        if need_config and exists:
            try:
                target.cfg = config.load(path)
            except InvalidInput as e:
                target.problems = _problem_count(e)
        return target
    if not exists:
        raise Failure(f"there is no schedule file at {path}; pass --config FILE or set"
                      f" ${config.CONFIG_ENV}, or name the ledger with --database URL or"
                      " PATH.")
    try:
        cfg = config.load(path)
    except InvalidInput as e:
        target = LedgerTarget("", path, problems=_problem_count(e))
    else:
        return LedgerTarget(cfg.database, path, cfg)
    url = config.database_of(path) if from_invalid_file else None
    if url is None:
        raise Failure(f"{target.invalid()}, and it names the ledger; pass --database URL or"
                      " PATH to use the ledger without it.")
    target.url = url
    return target


@contextmanager
def ledger_only(args: argparse.Namespace, *, need_config: bool = False,
                from_invalid_file: bool = False) -> Iterator[tuple[Ledger, LedgerTarget]]:
    """Open the ledger of a command that only reads or edits it, and close it afterwards.

    The ledger is found by :func:`ledger_target` (same keywords) and opened without
    creating it, so a mistyped ``--database`` is an error rather than a new empty ledger.
    """
    target = ledger_target(args, need_config=need_config, from_invalid_file=from_invalid_file)
    ledger = _open_ledger(target.url)
    try:
        yield ledger, target
    finally:
        ledger.close()


def _open_ledger(url: str, *, code: int = EXIT_FAILURE, create: bool = False) -> Ledger:
    try:
        return Ledger.open(url, create=create)
    except LedgerError as e:
        # An unreachable or locked database may come back: exit 1, so systemd retries.
        raise Failure(str(e), EXIT_FAILURE if e.temporary else code) from None


def _local(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


# --- commands ------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a schedule file and summarize it."""
    path = Path(args.file) if args.file else _config_path(args)
    cfg = _load(args, path)
    enabled = sum(1 for s in cfg.schedules if s.enabled)
    # Named audiences and schedules' own inline lists: the audiences `run` sends to.
    audiences = {id(a): a for a in (*cfg.audiences.values(), *(s.audience for s in cfg.schedules))}
    users = sum(a.size for a in audiences.values())
    _out(f"{path}: valid: {_count(len(cfg.schedules), 'schedule')} ({enabled:,} enabled),"
         f" {_count(len(audiences), 'audience')} ({_count(users, 'user')}).")
    _warn_never_firing(cfg)
    return EXIT_OK


def _warn_never_firing(cfg: config.Config) -> None:
    for warning in plan.never_firing(cfg, SystemClock().now()):
        _err(warning)


def cmd_next(args: argparse.Namespace) -> int:
    """List upcoming fire times of a cron expression or of the file's schedules."""
    after: datetime = args.after or SystemClock().now()
    if args.cron is not None:
        if args.schedule or args.user:
            raise UsageError("--cron cannot be combined with --schedule or --user")
        fires = _next_cron(args.cron, args.timezone or config.DEFAULT_ZONE, after, args.count)
    else:
        if args.timezone:
            raise UsageError("--timezone goes with --cron; schedules carry their own zone")
        fires = _next_schedules(args, after)
    if args.json:
        _out(json.dumps([_fire_json(f, args.user) for f in fires], indent=2))
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
    for t in plan.iter_fires(timing, after):
        out.append(plan.Fire("", zone, t, t))
        if len(out) >= count:
            break
    return out


def _next_schedules(args: argparse.Namespace, after: datetime) -> list[plan.Fire]:
    cfg = _load(args)
    _warn_never_firing(cfg)
    schedules = list(cfg.schedules)
    if args.schedule:
        unknown = [s for s in args.schedule if cfg.schedule(s) is None]
        if unknown:
            known = ", ".join(s.id for s in cfg.schedules) or "none"
            raise Failure(f"no schedule {unknown[0]!r} in {cfg.path} (it has: {known}).")
        schedules = [s for s in schedules if s.id in args.schedule]
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
        fires.extend(plan.upcoming(s, after, args.count, member))
    if args.user is not None and not found_user:
        raise Failure(f"no enabled schedule in {cfg.path} sends to user {args.user!r}.")
    return fires


def _fire_json(f: plan.Fire, user: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "schedule": f.schedule or None,
        "utc": rfc3339(f.nominal),
        "local": _local(f.local()),
        "timezone": f.zone,
    }
    if user is not None:
        item["app_user_id"] = user
        item["send_at"] = rfc3339(f.send_at) if f.send_at.microsecond == 0 else (
            f.send_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return item


def _print_fires(fires: list[plan.Fire], user: str | None) -> None:
    if not fires:
        _out("No upcoming fires.")
        return
    current: tuple[str, str] | None = None
    for f in fires:
        if f.schedule and (f.schedule, f.zone) != current:
            current = (f.schedule, f.zone)
            _out(f"{f.schedule} ({f.zone})")
        local = f.local()
        line = f"  {local:%a %Y-%m-%d %H:%M:%S} {local.tzname()} ({local:%z})  {rfc3339(f.nominal)}"
        if user is not None and f.send_at != f.nominal:
            line += f"  sent {(f.send_at - f.nominal).total_seconds():.3f}s later (jitter)"
        _out(line)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the schedule file."""
    _out(json.dumps(schema(), indent=2))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT."""
    logs.setup(args.log_format, verbose=args.verbose)
    cfg = _load(args, code=EXIT_CONFIG)
    clock = SystemClock()
    token = _usable_token(cfg.endpoint.token, clock.now())
    try:
        ledger = Ledger.open(_database_url(args, cfg), create=True)
        try:
            ledger.check_writable(to_ms(clock.now()))
        except BaseException:
            ledger.close()
            raise
    except LedgerError as e:
        # A database that may come back (unreachable, busy) exits 1 so systemd retries; a
        # ledger that cannot be opened or written is configuration: 78 stops the restarts.
        raise Failure(f"{e} Not starting.", EXIT_FAILURE if e.temporary else EXIT_CONFIG
                      ) from None
    daemon = Daemon(cfg, token, ledger, clock=clock, metrics_listen=args.metrics)
    try:
        return asyncio.run(daemon.run())
    except ListenError as e:
        raise Failure(str(e)) from None


def _usable_token(source: config.TokenSource, now: datetime) -> auth.Token:
    """Load the token for `run`; exit 78 when there is none or it has expired."""
    try:
        token = auth.load_token(source)
    except auth.TokenError as e:
        raise Failure(f"{e} eventcron needs the API token (endpoint.token); not starting.",
                      EXIT_CONFIG) from None
    if token.expired(now):
        raise Failure(f"{auth.describe_expiry(token, now)}; get a new one from the console's"
                      " Settings page. Not starting.", EXIT_CONFIG)
    warning = auth.loose_permissions(source)
    if warning:
        logs.warn(warning)
    if not token.is_jwt:
        logs.warn(f"{auth.describe_expiry(token, now)}; eventcron cannot warn before it"
                  " expires")
    return token


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo."""
    logs.setup(args.log_format, verbose=args.verbose)
    if not args.verbose:
        logs.quiet()
    return asyncio.run(run_demo(args.duration, keep=args.keep))


def cmd_send(args: argparse.Namespace) -> int:
    """Send one event now, without the ledger, and report what the endpoint said."""
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as e:
        raise UsageError(f"--data is not JSON: {e.msg} at character {e.pos + 1}") from None
    if not isinstance(data, dict):
        raise UsageError("--data must be a JSON object, such as '{\"plan\": \"pro\"}'")
    for value, what in ((args.user, "--user"), (args.event_type, "--event-type")):
        problem = check_id(value, what)
        if problem:
            raise UsageError(problem.rstrip("."))
    cfg = _load(args)
    clock = SystemClock()
    token = _usable_token(cfg.endpoint.token, clock.now())
    now = clock.now()
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"send:{args.user}:{args.event_type}:"
                                                  f"{to_ms(now)}"))

    async def go() -> int:
        sender = Sender(cfg.endpoint.url, token, timeout=cfg.endpoint.timeout, concurrency=1)
        try:
            outcome = await sender.send(event_id, args.user, args.event_type,
                                        json.dumps(data, ensure_ascii=False), now)
        finally:
            await sender.aclose()
        if outcome.kind == "delivered":
            _out(f"delivered: HTTP {outcome.status_code}, event {event_id} to {args.user}.")
            return EXIT_OK
        raise Failure(f"not delivered: {outcome.error} (event {event_id}).")

    return asyncio.run(go())


def cmd_status(args: argparse.Namespace) -> int:
    """Show schedules with their last and next fire, ledger counts and endpoint health.

    Only the ledger is needed: when the schedule file is invalid (or, with ``--database``,
    absent) it shows what the ledger knows, after one warning line if the file is invalid.
    """
    now = SystemClock().now()
    with ledger_only(args, need_config=True, from_invalid_file=True) as (ledger, target):
        counts = ledger.counts()
        by_schedule = ledger.counts_by_schedule()
        last_fired = ledger.last_fired()
        health = ledger.health()
        known = ledger.known_schedules() if target.cfg is None else set()
    cfg = target.cfg
    if target.problems:
        shown = make_url(target.url).render_as_string(hide_password=True)
        _err(f"eventcron: warning: {target.invalid()}; showing what the ledger {shown}"
             " knows.")
    none = dict.fromkeys(STATUSES, 0)
    schedules: list[dict[str, Any]] = []
    for s in cfg.schedules if cfg is not None else ():
        upcoming = plan.upcoming(s, now, 1) if s.enabled else []
        last = last_fired.get(s.id)
        schedules.append({
            "id": s.id, "kind": s.kind, "timezone": s.timezone, "enabled": s.enabled,
            "event_type": s.event_type, "users": s.audience.size,
            "last_fire": rfc3339(from_ms(last)) if last is not None else None,
            "next_fire": rfc3339(upcoming[0].nominal) if upcoming else None,
            "counts": by_schedule.get(s.id, none),
        })
    if cfg is None:  # what the ledger knows: no kind, zone, audience or next fire
        for sid in sorted({*by_schedule, *last_fired, *known}):
            last = last_fired.get(sid)
            schedules.append({
                "id": sid, "kind": None, "timezone": None, "enabled": None,
                "event_type": None, "users": None,
                "last_fire": rfc3339(from_ms(last)) if last is not None else None,
                "next_fire": None, "counts": by_schedule.get(sid, none),
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
        _out(json.dumps({"schedules": schedules, "counts": counts, "endpoint": endpoint,
                         "file": file}, indent=2))
        return EXIT_OK
    _out(f"Schedules in {cfg.path}:" if cfg is not None else "Schedules in the ledger:")
    for item in schedules:
        c = item["counts"]
        tally = (f"{c['pending']} pending, {c['delivered']} delivered, {c['failed']} failed,"
                 f" {c['expired']} expired")
        if cfg is None:
            _out(f"  {item['id']}: last fire {item['last_fire'] or 'never'}; {tally}")
            continue
        state = "" if item["enabled"] else "  (disabled)"
        _out(f"  {item['id']}{state}: {item['kind']}, {item['timezone']}, {item['users']:,}"
             f" users; last fire {item['last_fire'] or 'never'}, next"
             f" {item['next_fire'] or 'none'}; {tally}")
    _out("Ledger: " + ", ".join(f"{n:,} {s}" for s, n in counts.items()))
    _out(f"Endpoint: {endpoint['url'] or 'unknown without a valid schedule file'}")
    _out(f"  last delivery: {endpoint['last_delivered_at'] or 'none yet'}")
    if health.last_error:
        _out(f"  last error: {health.last_error} at {endpoint['last_error_at']}")
    if token_info is not None:
        _out(f"  token: {token_info.get('summary') or token_info.get('problem')}")
    return EXIT_OK


def _token_status(source: config.TokenSource, now: datetime) -> dict[str, Any]:
    """Describe the token's source and expiry for `status`, or the problem loading it."""
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
        _out(json.dumps([_row_json(r) for r in rows], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        _out("No deliveries match.")
        return EXIT_OK
    _out(f"{'SCHEDULED (UTC)':<20}  {'STATUS':<9}  {'TRIES':>5}  {'CODE':>4}  SCHEDULE / USER /"
         " EVENT TYPE / LAST ERROR")
    for r in rows:
        code = str(r.last_status_code) if r.last_status_code is not None else "-"
        error = f"  {r.last_error}" if r.last_error and r.status != "delivered" else ""
        _out(f"{rfc3339(from_ms(r.scheduled_for)):<20}  {r.status:<9}  {r.attempts:>5}  {code:>4}"
             f"  {r.schedule_id} / {r.app_user_id} / {r.event_type}{error}")
    if args.limit and len(rows) == args.limit:
        _out(f"(the newest {args.limit}; --limit 0 shows all)", sys.stderr)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Put failed or expired rows back to pending."""
    filters = _filters_of(args)
    with ledger_only(args, need_config=True) as (ledger, target):
        # Replayed rows expire after the file's delivery.expires_after, or the default.
        policy = target.cfg.delivery if target.cfg is not None else config.Delivery()
        if target.problems and not args.dry_run:
            _err(f"eventcron: warning: {target.invalid()}; replayed events expire"
                 f" {config.format_duration(policy.expires_after)} from now, the default.")
        now = SystemClock().now()
        n = ledger.replay(filters, to_ms(now), round(policy.expires_after * 1000),
                          dry_run=args.dry_run)
    what = "/".join(filters.status) if filters.status else "failed or expired"
    if args.dry_run:
        _out(f"{n:,} {what} events would be replayed (dry run; nothing changed).")
    else:
        _out(f"{n:,} {what} events are pending again; a running eventcron sends them now.")
    return EXIT_OK


def cmd_fire(args: argparse.Namespace) -> int:
    """Enqueue one occurrence of a schedule now, through the ledger's unique key."""
    cfg = _load(args)
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
    ledger = _open_ledger(_database_url(args, cfg))
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
        _out(f"{schedule.id} at {rfc3339(nominal)} ({local.isoformat(timespec='seconds')}"
             f" {job.zone}): {verb} {_count(added, 'new row')};"
             f" {_count(users - added, 'row')} {had}.")
    if args.dry_run:
        _out("Dry run: nothing was written.")
        return EXIT_OK
    _out(_who_sends(instances, to_ms(clock.now()), cfg.sha256))
    return EXIT_OK


def _count_fire(ledger: Ledger, job: plan.Job, nominal: datetime) -> Enqueued:
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
    # The daemon's own firing path: batches, the fire record, progress lines, the unique key.
    db = LedgerThread(ledger)
    try:
        firer = Firer(db, SystemClock(), lambda: cfg.delivery, on_enqueued=lambda: None)
        counts = [await firer.fire(job, nominal, "eventcron fire", by_hand=True)
                  for job, nominal in picked]
        return counts, await db.call(ledger.instances)
    finally:
        db.close()


def _who_sends(instances: list[Instance], now_ms: int, plan_sha256: str) -> str:
    """Say whether a running instance will send the rows just enqueued."""
    alive = [i for i in instances if i.alive(now_ms)]
    if not alive:
        if not instances:
            return ("No instance has run against this ledger yet: the rows wait pending until"
                    " `eventcron run` starts.")
        last = instances[0]
        why = "stopped" if last.stopped_at is not None else "no heartbeat since: crashed or cut off"
        return (f"No instance is running (last seen {_ago(now_ms - last.last_seen)} ago on"
                f" {last.host}, {why}): the rows wait pending until one starts.")
    who = "; ".join(f"{i.host} pid {i.pid}, last seen {_ago(now_ms - i.last_seen)} ago"
                    for i in alive)
    lines = [f"A running instance will send them ({who})."]
    if any(i.paused for i in alive):
        lines.append("But sending is paused: the endpoint refused the token (see `eventcron"
                     " status`).")
    if all(i.plan_sha256 != plan_sha256 for i in alive):
        lines.append(f"Note: the running instances run another version of the schedule file"
                     f" (plan {alive[0].plan_sha256[:8]}, this file {plan_sha256[:8]}); rows of"
                     " a schedule their version lacks are cancelled, not sent.")
    return "\n".join(lines)


def _ago(ms_: int) -> str:
    seconds = max(0, ms_ // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _count(n: int, noun: str) -> str:
    """Return ``1 row``, ``2 rows``, ``1,000 rows``: one rule for counts in messages."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def cmd_token(args: argparse.Namespace) -> int:
    """Show the token's claims (never the token) and expiry."""
    cfg = _load(args)
    now = SystemClock().now()
    try:
        token = auth.load_token(cfg.endpoint.token)
    except auth.TokenError as e:
        raise Failure(str(e)) from None
    info = {
        "source": cfg.endpoint.token.describe(),
        "jwt": token.is_jwt,
        "claims": token.claims,
        "expires_at": rfc3339(token.expires_at) if token.expires_at else None,
        "expired": token.expired(now),
        "summary": auth.describe_expiry(token, now),
    }
    warning = auth.loose_permissions(cfg.endpoint.token)
    if args.json:
        _out(json.dumps(info, indent=2, default=str))
    else:
        _out(f"Token from {info['source']}:")
        for key, value in token.claims.items():
            shown = value
            if key in ("exp", "iat", "nbf") and isinstance(value, int | float):
                shown = f"{value} ({rfc3339(datetime.fromtimestamp(value, UTC))})"
            _out(f"  {key}: {shown}")
        _out(str(info["summary"]).capitalize() + ".")
        if warning:
            _out(f"Warning: {warning}.")
    return EXIT_FAILURE if token.expired(now) else EXIT_OK


def cmd_sink(args: argparse.Namespace) -> int:
    """Run the local receiver until interrupted."""
    try:
        faults = Faults(fail_rate=args.fail_rate, fail_status=args.fail_status,
                        throttle_rate=args.throttle_rate, retry_after=args.retry_after,
                        latency=args.latency, down_after=args.down_after,
                        down_for=args.down_for, down_every=args.down_every, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    record = Path(args.record) if args.record else None
    return asyncio.run(serve(host=args.host, port=args.port, path=args.path,
                             secret=args.secret, record_path=record, faults=faults))


# --- entry points --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` and return the exit code."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = args.func(args)
        return code
    except UsageError as e:
        (e.parser or getattr(args, "parser", None) or parser).print_usage(sys.stderr)
        _err(f"eventcron: error: {e}.")
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except Failure as e:
        _err(f"eventcron: {e}")
        return e.code
    except SQLAlchemyError as e:
        # The ledger refused mid-command (locked beyond its busy timeout, the server gone):
        # a sentence, never a traceback; whatever it wrote is whole, so trying again is safe.
        cause = str(getattr(e, "orig", None) or e).strip().splitlines()
        _err(f"eventcron: the ledger failed: {cause[0] if cause else type(e).__name__};"
             " nothing was left half-done, so try again.")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("eventcron: interrupted.")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say to it.
        sys.stderr.close()
        return EXIT_OK


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
