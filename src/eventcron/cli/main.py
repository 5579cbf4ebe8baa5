"""The command line: the parser, and main(), which runs one command and maps its errors.

Each command lives in a module of its own group and is imported only when it runs, so that
`eventcron --version` or `validate` never pays for the database layer, the HTTP stack or
the scheduler. Exit codes: 0 success, 1 failure or invalid input, 2 usage error, 78 a
configuration that cannot start (EX_CONFIG). Errors are sentences, never tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final, NoReturn

from eventcron import __version__
from eventcron.cli.guide import epilog
from eventcron.cli.output import (
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
LOG_FORMATS: Final = ("text", "json")  # the first is the default
SHELLS: Final = ("bash", "zsh", "fish")  # eventcron completion SHELL

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


# The global options, described once (on `eventcron --help`) and accepted before or after
# the command by the commands that read them; a command refuses one it would ignore, saying
# why (_NOT_READ).
_GLOBALS: Final = ("--config", "--database", "--verbose", "--log-format")
_NOT_READ: Final = {"--config": "reads no schedule file", "--database": "opens no ledger",
                    "--verbose": "writes no log", "--log-format": "writes no log"}
_FILE: Final = ("--config",)
_LEDGER: Final = ("--config", "--database")  # the file names the ledger unless told
_LOGS: Final = ("--verbose", "--log-format")


def _add_global(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *,
                top: bool) -> None:
    # Under a command: hidden (described on the top level only), and SUPPRESS as the default
    # keeps an option the command did not get from overwriting one given before it.
    def shown(text: str) -> str:
        return text if top else argparse.SUPPRESS

    unset = None if top else argparse.SUPPRESS
    if flag == "--config":
        parser.add_argument(flag, metavar="FILE", default=unset, help=shown(
            f"schedule file (default: ${locate.CONFIG_ENV} or ./{locate.DEFAULT_CONFIG})"))
    elif flag == "--database":
        parser.add_argument(flag, metavar="URL", default=unset, help=shown(
            f"ledger database URL or SQLite path (overrides the file and"
            f" ${locate.DATABASE_ENV})"))
    elif flag == "--verbose":
        parser.add_argument(flag, action="store_true", default=False if top else unset,
                            help=shown("log debug detail (never the token)"))
    else:
        parser.add_argument(flag, choices=LOG_FORMATS, default=unset, help=shown(
            "log lines as text (the default) or one JSON object per line"))


class _Unread(argparse.Action):
    """A global option given after a command that does not read it: a usage error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        flag = self.option_strings[0]
        raise UsageError(f"{self.metavar} {_NOT_READ[flag]}, so it takes no {flag}", parser)


def _refuse_unread(args: argparse.Namespace, reads: Sequence[str]) -> None:
    """Refuse a global option given before a command that does not read it."""
    for flag in _GLOBALS:
        if flag not in reads and getattr(args, flag[2:].replace("-", "_")) not in (None, False):
            raise UsageError(f"{args.command} {_NOT_READ[flag]}, so it takes no {flag}",
                             args.parser)


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Return the command parsers of ``parser`` (one from :func:`build_parser`) by name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = _Parser(prog="eventcron", description="Send scheduled events to the Inbound"
                     " Events API: cron-exact timing, each occurrence once per user.",
                     epilog="Run eventcron COMMAND --help for a command's options, examples"
                            " and exit statuses.")
    parser.add_argument("--version", action="version", version=f"eventcron {__version__}")
    top = parser.add_argument_group(
        "global options", "given before or after the command, to the commands that read them")
    for flag in _GLOBALS:
        _add_global(top, flag, top=True)
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, help_text: str, where: str,
                reads: Sequence[str] = ()) -> argparse.ArgumentParser:
        # ``where`` is "module:function" in this package, imported when the command runs;
        # ``reads`` the global options it uses.
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=epilog(name, tuple(reads)),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        for flag in _GLOBALS:
            if flag in reads:
                _add_global(p, flag, top=False)
            else:  # say why, rather than "unrecognized arguments"
                p.add_argument(flag, action=_Unread, nargs=0 if flag == "--verbose" else None,
                               help=argparse.SUPPRESS, default=argparse.SUPPRESS, metavar=name)
        p.set_defaults(func=where, parser=p, reads=tuple(reads))
        return p

    p = command("validate", "check a schedule file; print every problem", "schedules:cmd_validate",
                _FILE)
    p.add_argument("file", nargs="?", help="the schedule file (default: --config)")

    p = command("next", "show upcoming fire times", "schedules:cmd_next", _FILE)
    p.add_argument("--cron", metavar="EXPR", help="a bare cron expression instead of the file")
    p.add_argument("--timezone", metavar="TZ", help="zone for --cron (default UTC)")
    _ids(p.add_argument("--schedule", metavar="ID", action="append",
                        help="only this schedule (repeatable)"))
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
                "diff:cmd_diff", _LEDGER)
    p.add_argument("file", nargs="?", help="the edited schedule file (default: --config)")
    p.add_argument("--against", metavar="OLD_FILE",
                   help="compare with this file (default: the plan last applied, from the"
                        " ledger)")
    p.add_argument("--days", metavar="N", type=_days, default=DEFAULT_DIFF_DAYS,
                   help=f"compare occurrences over the next N days, 1 to {MAX_DIFF_DAYS}"
                        f" (default {DEFAULT_DIFF_DAYS})")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = command("run", "run the daemon: fire schedules, deliver, retry, record", "service:cmd_run",
                (*_LEDGER, *_LOGS))
    p.add_argument("--metrics", metavar="ADDR", type=_listen,
                   help="serve /metrics and /healthz here (9108, 127.0.0.1:9108, [::1]:9108);"
                        " overrides metrics.listen")

    p = command("demo", "run the daemon against a built-in local receiver for a while",
                "service:cmd_demo", _LOGS)
    p.add_argument("--duration", metavar="TIME", type=_duration, default=20.0,
                   help="how long to run (default 20s)")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder and ledger")

    p = command("send", "send one event now and record it in the ledger (schedule -)",
                "endpoint:cmd_send", _LEDGER)
    p.add_argument("--user", metavar="ID", required=True, help="the app_user_id")
    p.add_argument("--event-type", metavar="TYPE", required=True, help="the event_type")
    p.add_argument("--data", metavar="JSON", default="{}", help="a JSON object (default {})")

    p = command("status", "who is running, schedules, ledger counts, endpoint health",
                "operate:cmd_status", _LEDGER)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("history", "occurrences newest first: fired or skipped, by whom, and their"
                " rows", "history:cmd_history", _LEDGER)
    _ids(p.add_argument("--schedule", metavar="ID", action="append",
                        help="only this schedule (repeatable)"))
    p.add_argument("--since", metavar="TIME", type=_since,
                   help="occurrences at or after TIME (RFC 3339, or a duration ago: 24h)")
    p.add_argument("--limit", metavar="N", type=_non_negative_int, default=DEFAULT_LIST_LIMIT,
                   help=f"occurrences at most (default {DEFAULT_LIST_LIMIT}; 0 for all)")
    p.add_argument("--changes", action="store_true",
                   help="list the plans instances applied and the reloads they refused,"
                        " instead of occurrences")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command("deliveries", "list ledger rows, newest first", "operate:cmd_deliveries",
                _LEDGER)
    _filters(p)
    p.add_argument("--limit", metavar="N", type=_non_negative_int, default=DEFAULT_LIST_LIMIT,
                   help=f"rows at most (default {DEFAULT_LIST_LIMIT}; 0 for all)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command("replay", "put failed or expired rows back to pending", "operate:cmd_replay",
                _LEDGER)
    # suppressed rows are put back only with --include-suppressed (cli/operate.py).
    _filters(p, statuses=(*REPLAYABLE, "suppressed"))
    p.add_argument("--include-suppressed", dest="include_suppressed", action="store_true",
                   help="also put suppressed rows (opted out, skipped, over the cap) back;"
                        " replay never resends them without it")
    p.add_argument("--dry-run", action="store_true", help="only count what would be replayed")

    p = command("fire", "enqueue one occurrence of a schedule for its whole audience now",
                "operate:cmd_fire", _LEDGER)
    _ids(p.add_argument("schedule", metavar="SCHEDULE", help="the schedule's id"))
    p.add_argument("--occurrence", metavar="TIME", type=_rfc3339,
                   help="the occurrence's nominal time, RFC 3339 (default: the latest one"
                        " not after now)")
    p.add_argument("--dry-run", action="store_true",
                   help="only count the rows it would add; write nothing")

    p = command("token", "show the token's claims and expiry; exit 1 if expired",
                "endpoint:cmd_token", _FILE)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("completion", "print the shell completion script for bash, zsh or fish",
                "completion:cmd_completion")
    p.add_argument("shell", choices=SHELLS, help="the shell: " + ", ".join(SHELLS))

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


def _ids(action: argparse.Action) -> None:
    # argcomplete asks an action's `completer` for the values Tab offers; setattr, because
    # argparse's Action declares no such attribute.
    from eventcron.cli.completion import schedule_ids

    setattr(action, "completer", schedule_ids)  # noqa: B010


def _filters(p: argparse.ArgumentParser,
             statuses: Sequence[str] = STATUSES) -> None:
    p.add_argument("--status", action="append", choices=statuses,
                   help="only rows in this state (repeatable)")
    _ids(p.add_argument("--schedule", metavar="ID", action="append",
                        help="only this schedule (repeatable)"))
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
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions, then exits
            import argcomplete

            argcomplete.autocomplete(parser)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        _refuse_unread(args, args.reads)
        if args.log_format is None:
            args.log_format = LOG_FORMATS[0]
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
