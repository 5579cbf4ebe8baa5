"""The command line: the parser, and main(), which runs one command and maps its errors.

Each command lives in a module of its own group and is imported only when it runs, so that
`eventcron --version` or `validate` never pays for the database layer, the HTTP stack or
the scheduler. Exit codes: 0 success, 1 failure or invalid input, 2 usage error, 78 a
configuration that cannot start (EX_CONFIG). Errors are sentences, never tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final, NoReturn

from eventcron import __version__
from eventcron.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
    UsageError,
    err,
)
from eventcron.clock import SystemClock
from eventcron.config import locate
from eventcron.states import REPLAYABLE, STATUSES

DEFAULT_NEXT_COUNT: Final = 5  # fires listed per schedule
DEFAULT_DIFF_DAYS: Final = 7  # days of occurrences `diff` compares
MAX_DIFF_DAYS: Final = 366  # a year: more is a listing, not a review
DEFAULT_LIST_LIMIT: Final = 50  # rows `deliveries` shows unless told otherwise

_USAGE: Final = (EXIT_USAGE, "usage error: an unknown option or a bad value")
_LEDGER: Final = (EXIT_FAILURE, "the schedule file or the ledger could not be read")
# What each command's --help ends with: examples, then its exit statuses, as the command's
# module returns them (cli/diff.py, cli/service.py, ...): keep the two in step.
_GUIDE: Final[dict[str, tuple[tuple[str, ...], tuple[tuple[int, str], ...]]]] = {
    "validate": (("eventcron validate schedules.yaml",
                  "eventcron validate --config /etc/eventcron/schedules.yaml"),
                 ((EXIT_OK, "the file is valid"),
                  (EXIT_FAILURE, "the file is invalid or missing (every problem is printed)"),
                  _USAGE)),
    "next": (("eventcron next --schedule checkin --count 3",
              "eventcron next --cron '0 9 * * 1-5' --timezone Europe/Berlin",
              "eventcron next --user u-42 --json"),
             ((EXIT_OK, "the fire times were listed"),
              (EXIT_FAILURE, "an invalid or missing file, a bad cron expression, or no such"
                            " schedule or user"),
              _USAGE)),
    "schema": (("eventcron schema > schedules.schema.json",
                "eventcron schema | jq '.properties | keys'"),
               ((EXIT_OK, "the schema was printed"), _USAGE)),
    "diff": (("eventcron diff schedules.yaml",
              "eventcron diff new.yaml --against schedules.yaml --days 30",
              "eventcron diff --json > change.json"),
             ((EXIT_OK, "no difference"), (EXIT_FAILURE, "differences (printed)"),
              (EXIT_USAGE, "trouble: a file or the ledger could not be compared, or a usage"
                           " error"))),
    "run": (("eventcron run --config /etc/eventcron/schedules.yaml",
             "eventcron run --metrics 127.0.0.1:9108 --log-format json"),
            ((EXIT_OK, "stopped by SIGTERM or SIGINT"),
             (EXIT_FAILURE, "a trouble that may pass: the database unreachable or busy, the"
                            " metrics address taken"),
             _USAGE,
             (EXIT_CONFIG, "a configuration that cannot start: an invalid file, no usable"
                           " token, a ledger that cannot be written"))),
    "demo": (("eventcron demo", "eventcron demo --duration 1m --keep"),
             ((EXIT_OK, "events were delivered"), (EXIT_FAILURE, "no event was delivered"),
              _USAGE)),
    "send": (("eventcron send --user u-42 --event-type trial_ending",
              "eventcron send --user u-42 --event-type plan_changed --data '{\"plan\": \"pro\"}'"),
             ((EXIT_OK, "the event was delivered"),
              (EXIT_FAILURE, "not delivered, or the schedule file could not be read"),
              (EXIT_USAGE, "usage error: --data is not a JSON object, or a bad option"))),
    "status": (("eventcron status",
                "eventcron status --json --database /var/lib/eventcron/ledger.db"),
               ((EXIT_OK, "the status was shown"), _LEDGER, _USAGE)),
    "history": (("eventcron history --since 24h",
                 "eventcron history --schedule checkin --limit 10 --json",
                 "eventcron history --changes"),
                ((EXIT_OK, "the history was listed"), _LEDGER, _USAGE)),
    "deliveries": (("eventcron deliveries --status failed --since 2h",
                    "eventcron deliveries --user u-42 --limit 0 --json"),
                   ((EXIT_OK, "the rows were listed"), _LEDGER, _USAGE)),
    "replay": (("eventcron replay --status failed --schedule checkin --dry-run",
                "eventcron replay --status expired --since 3d"),
               ((EXIT_OK, "the rows were put back (or counted, with --dry-run)"),
                (EXIT_FAILURE, "no such schedule in the ledger, suppressed rows without"
                               " --include-suppressed, or the ledger could not be read"),
                _USAGE)),
    "fire": (("eventcron fire checkin --dry-run",
              "eventcron fire checkin --occurrence 2026-12-01T09:00:00Z"),
             ((EXIT_OK, "the occurrence was enqueued (or counted, with --dry-run)"),
              (EXIT_FAILURE, "no such or a disabled schedule, an occurrence still to come or"
                             " expired, or the ledger could not be written"),
              _USAGE)),
    "token": (("eventcron token", "eventcron token --json"),
              ((EXIT_OK, "the token is readable and has not expired"),
               (EXIT_FAILURE, "the token has expired or cannot be read, or the schedule file"
                              " is invalid"),
               _USAGE)),
    "sink": (("eventcron sink --port 8080 --record requests.jsonl",
              "eventcron sink --fail-rate 0.2 --throttle-rate 0.1 --retry-after 2s",
              "eventcron sink --down-after 30s --down-for 10s --down-every 2m"),
             ((EXIT_OK, "stopped by SIGINT or SIGTERM"),
              (EXIT_FAILURE, "cannot listen on the address or write the --record file"),
              _USAGE)),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the command; SUPPRESS keeps a subcommand's absent option
    # from overwriting what was given before it.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help=f"schedule file (default: ${locate.CONFIG_ENV} or"
                             f" ./{locate.DEFAULT_CONFIG})")
    parser.add_argument("--database", metavar="URL", default=default,
                        help=f"ledger database URL (overrides the file and"
                             f" ${locate.DATABASE_ENV})")
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

    def command(name: str, help_text: str, where: str) -> argparse.ArgumentParser:
        # ``where`` is "module:function" in this package, imported when the command runs.
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, top=False)
        p.set_defaults(func=where, parser=p)
        return p

    p = command("validate", "check a schedule file; print every problem", "schedules:cmd_validate")
    p.add_argument("file", nargs="?", help="the schedule file (default: --config)")

    p = command("next", "show upcoming fire times", "schedules:cmd_next")
    p.add_argument("--cron", metavar="EXPR", help="a bare cron expression instead of the file")
    p.add_argument("--timezone", metavar="TZ", help="zone for --cron (default UTC)")
    p.add_argument("--schedule", metavar="ID", action="append",
                   help="only this schedule (repeatable)")
    p.add_argument("--user", metavar="ID",
                   help="fires for this user: their zone, jitter and quiet hours, and the"
                        " occurrences they skip (skip dates, holidays, opt-out); JSON adds"
                        " send_at, skipped and expired (a reason, or null)")
    p.add_argument("--all", action="store_true",
                   help="also list occurrences skipped for everyone (by a skip date or"
                        " holiday), marked skipped; without it they are left out")
    p.add_argument("--count", metavar="N", type=_positive_int, default=DEFAULT_NEXT_COUNT,
                   help=f"fires shown per schedule (default {DEFAULT_NEXT_COUNT})")
    p.add_argument("--after", metavar="TIME", type=_rfc3339,
                   help="list times strictly after this RFC 3339 time (default now)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON array; a schedule's items have skipped (a reason, or"
                        " null)")

    command("schema", "print the JSON Schema of the schedule file", "schedules:cmd_schema")

    p = command("diff", "what applying a schedule file will change (exit 1 if anything)",
                "diff:cmd_diff")
    p.add_argument("file", nargs="?", help="the edited schedule file (default: --config)")
    p.add_argument("--against", metavar="OLD_FILE",
                   help="compare with this file (default: the plan last applied, from the"
                        " ledger)")
    p.add_argument("--days", metavar="N", type=_days, default=DEFAULT_DIFF_DAYS,
                   help=f"compare occurrences over the next N days, 1 to {MAX_DIFF_DAYS}"
                        f" (default {DEFAULT_DIFF_DAYS})")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = command("run", "run the daemon: fire schedules, deliver, retry, record", "service:cmd_run")
    p.add_argument("--metrics", metavar="ADDR", type=_listen,
                   help="serve /metrics and /healthz here (9108, 127.0.0.1:9108, [::1]:9108);"
                        " overrides metrics.listen")

    p = command("demo", "run the daemon against a built-in local receiver for a while",
                "service:cmd_demo")
    p.add_argument("--duration", metavar="TIME", type=_duration, default=20.0,
                   help="how long to run (default 20s)")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder and ledger")

    p = command("send", "send one event now (the documented curl call)", "endpoint:cmd_send")
    p.add_argument("--user", metavar="ID", required=True, help="the app_user_id")
    p.add_argument("--event-type", metavar="TYPE", required=True, help="the event_type")
    p.add_argument("--data", metavar="JSON", default="{}", help="a JSON object (default {})")

    p = command("status", "who is running, schedules, ledger counts, endpoint health",
                "operate:cmd_status")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("history", "occurrences newest first: fired or skipped, by whom, and their"
                " rows", "history:cmd_history")
    p.add_argument("--schedule", metavar="ID", action="append",
                   help="only this schedule (repeatable)")
    p.add_argument("--since", metavar="TIME", type=_since,
                   help="occurrences at or after TIME (RFC 3339, or a duration ago: 24h)")
    p.add_argument("--limit", metavar="N", type=_non_negative_int, default=DEFAULT_LIST_LIMIT,
                   help=f"occurrences at most (default {DEFAULT_LIST_LIMIT}; 0 for all)")
    p.add_argument("--changes", action="store_true",
                   help="list the plans instances applied and the reloads they refused,"
                        " instead of occurrences")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command("deliveries", "list ledger rows, newest first", "operate:cmd_deliveries")
    _filters(p)
    p.add_argument("--limit", metavar="N", type=_non_negative_int, default=DEFAULT_LIST_LIMIT,
                   help=f"rows at most (default {DEFAULT_LIST_LIMIT}; 0 for all)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command("replay", "put failed or expired rows back to pending", "operate:cmd_replay")
    # suppressed rows are put back only with --include-suppressed (cli/operate.py).
    _filters(p, statuses=(*REPLAYABLE, "suppressed"))
    p.add_argument("--include-suppressed", dest="include_suppressed", action="store_true",
                   help="also put suppressed rows (opted out, skipped, over the cap) back;"
                        " replay never resends them without it")
    p.add_argument("--dry-run", action="store_true", help="only count what would be replayed")

    p = command("fire", "enqueue one occurrence of a schedule for its whole audience now",
                "operate:cmd_fire")
    p.add_argument("schedule", metavar="SCHEDULE", help="the schedule's id")
    p.add_argument("--occurrence", metavar="TIME", type=_rfc3339,
                   help="the occurrence's nominal time, RFC 3339 (default: the latest one"
                        " not after now)")
    p.add_argument("--dry-run", action="store_true",
                   help="only count the rows it would add; write nothing")

    p = command("token", "show the token's claims and expiry; exit 1 if expired",
                "endpoint:cmd_token")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("sink", "run a local receiver that speaks the Inbound Events API",
                "endpoint:cmd_sink")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=_non_negative_int, default=8080,
                   help="port (default 8080; 0 picks a free one)")
    p.add_argument("--path", default="/api/v1/webhook/event",
                   help="the endpoint path (default %(default)s)")
    # A secret on the command line shows in `ps`: offer a file and the environment too.
    given = p.add_mutually_exclusive_group()
    given.add_argument("--secret",
                       help="check HS256 signatures of tokens with this secret; it shows in"
                            " ps, so prefer --secret-file or $EVENTCRON_SINK_SECRET (give one"
                            " of the three; default: no check)")
    given.add_argument("--secret-file", metavar="FILE", dest="secret", type=_secret_file,
                       help="read the HS256 secret from FILE, one trailing newline dropped"
                            " (instead of --secret or $EVENTCRON_SINK_SECRET; default: none)")
    p.add_argument("--record", metavar="FILE",
                   help="append each request as a JSON line (default: not recorded)")
    p.add_argument("--fail-rate", type=_share, default=0.0, metavar="SHARE",
                   help="share of requests answered with --fail-status, 0 to 1 (default 0)")
    p.add_argument("--fail-status", type=int, default=503, metavar="CODE",
                   help="HTTP status of the failed answers (default %(default)s)")
    p.add_argument("--throttle-rate", type=_share, default=0.0, metavar="SHARE",
                   help="share of requests answered 429 with Retry-After, 0 to 1 (default 0)")
    p.add_argument("--retry-after", type=_duration, default=1.0, metavar="TIME",
                   help="the Retry-After of the 429 answers (default 1s)")
    p.add_argument("--latency", type=_duration, default=0.0, metavar="TIME",
                   help="added before each answer (default 0s)")
    p.add_argument("--down-after", type=_duration, default=None, metavar="TIME",
                   help="stop listening this long after start (default: never)")
    p.add_argument("--down-for", type=_duration, default=0.0, metavar="TIME",
                   help="how long each outage lasts (default 0s: back at once)")
    p.add_argument("--down-every", type=_duration, default=None, metavar="TIME",
                   help="repeat the outage this often (default: once)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the fault draws (default %(default)s)")
    return parser


def _epilog(command: str) -> str:
    """Return the end of ``command``'s --help: its examples and exit statuses (_GUIDE)."""
    examples, statuses = _GUIDE[command]
    return "\n".join(["Examples:", *(f"  {e}" for e in examples), "", "Exit status:",
                      *(f"  {code:<3} {meaning}" for code, meaning in statuses)])


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
    from eventcron import config

    try:
        return config.parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _secret_file(text: str) -> str:
    # Imported here: the sink's module is not needed by any other command.
    from pathlib import Path

    from eventcron.testing.command import read_secret_file

    try:
        return read_secret_file(Path(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> float:
    from eventcron import config

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


def _whole(text: str, low: int, too_low: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} {too_low}")
    return value


def _non_negative_int(text: str) -> int:
    return _whole(text, 0, "must not be negative")


def _since(text: str) -> datetime:
    from eventcron import config

    try:
        seconds = config.parse_duration(text)
    except ValueError:
        pass
    else:
        try:
            return SystemClock().now() - timedelta(seconds=seconds)
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} reaches back past year 1") from None
    try:
        datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time --since accepts; give a duration ago such as 2h or 3d,"
            " or an RFC 3339 time such as 2026-12-01T09:00:00Z") from None
    if _is_date(text):  # fromisoformat takes a bare date (as midnight); RFC 3339 does not
        raise argparse.ArgumentTypeError(
            f"{text!r} is a date without a time; give an RFC 3339 time such as"
            f" {text.strip()}T00:00:00Z, or a duration ago such as 2h or 3d")
    return _rfc3339(text)  # a time: it still needs its UTC offset


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _positive_int(text: str) -> int:
    return _whole(text, 1, "must be at least 1")


def _days(text: str) -> int:
    days = _whole(text, 1, "must be at least 1")
    if days > MAX_DIFF_DAYS:
        raise argparse.ArgumentTypeError(f"{days:,} days is more than {MAX_DIFF_DAYS}")
    return days


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` and return the exit code."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        module, name = args.func.split(":")
        run: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"eventcron.cli.{module}"), name)
        return run(args)
    except UsageError as e:
        (e.parser or getattr(args, "parser", None) or parser).print_usage(sys.stderr)
        err(f"eventcron: error: {e}.")
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except Failure as e:
        err(f"eventcron: {e}")
        return e.code
    except KeyboardInterrupt:
        err("eventcron: interrupted.")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say to it.
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:
        # The ledger refused mid-command (locked beyond its busy timeout, the server gone):
        # a sentence, never a traceback; whatever it wrote is whole, so trying again is safe.
        # (SQLAlchemy is imported only by commands that use it, so only they can raise it.)
        errors = sys.modules.get("sqlalchemy.exc")
        if errors is None or not isinstance(e, errors.SQLAlchemyError):
            raise
        from eventcron.problems import first_line  # here only: it loads dataclasses, difflib

        err(f"eventcron: the ledger failed: {first_line(e)};"
             " nothing was left half-done, so try again.")
        return EXIT_FAILURE


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
