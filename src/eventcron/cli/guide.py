"""What each command's --help ends with: the global options it reads, examples, exit statuses.

The exit statuses are the ones the command's module returns (cli/diff.py, cli/service.py,
...): keep the two in step. tests/unit/test_help.py runs every example through the parser.
"""

from __future__ import annotations

import textwrap
from typing import Final

from eventcron.cli.output import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE

_WIDTH: Final = 79  # of an exit status's lines
_USAGE: Final = (EXIT_USAGE, "usage error: an unknown option or a bad value")
_LEDGER: Final = (EXIT_FAILURE, "the schedule file or the ledger could not be read")
GUIDE: Final[dict[str, tuple[tuple[str, ...], tuple[tuple[int, str], ...]]]] = {
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
              (EXIT_FAILURE, "not delivered (recorded as failed), no usable token, the"
                             " schedule file could not be read, or the ledger could not take"
                             " the record (then nothing was sent)"),
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
    "completion": (("eventcron completion bash > /etc/bash_completion.d/eventcron",
                    "eventcron completion zsh > /usr/local/share/zsh/site-functions/_eventcron",
                    "eventcron completion fish > /etc/fish/completions/eventcron.fish"),
                   ((EXIT_OK, "the script was printed"), _USAGE)),
}


def epilog(command: str, reads: tuple[str, ...]) -> str:
    """Return the end of ``command``'s --help: global options read, examples, exit statuses.

    The global options are only named here: ``eventcron --help`` describes them, once.
    """
    examples, statuses = GUIDE[command]
    lines = []
    if reads:
        lines += [f"Global options: {' '.join(reads)} (see eventcron --help)", ""]
    # The epilog is printed as written (RawDescriptionHelpFormatter): wrap the meanings here.
    wrapped = [textwrap.fill(meaning, _WIDTH, initial_indent=f"  {code:<3} ",
                             subsequent_indent=" " * 6) for code, meaning in statuses]
    return "\n".join([*lines, "Examples:", *(f"  {e}" for e in examples), "", "Exit status:",
                      *wrapped])
