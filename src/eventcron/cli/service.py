"""Commands that run the daemon: run, demo."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from eventcron import config, logs
from eventcron.cli.common import database_url, load
from eventcron.cli.output import EXIT_CONFIG, EXIT_FAILURE, Failure
from eventcron.clock import SystemClock, to_ms
from eventcron.text import sentence

if TYPE_CHECKING:
    from eventcron.delivery import auth


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT."""
    import asyncio

    from eventcron.ledger import Ledger, LedgerError
    from eventcron.metrics import ListenError
    from eventcron.service.daemon import Daemon

    logs.setup(args.log_format, verbose=args.verbose)
    cfg = load(args, code=EXIT_CONFIG)
    clock = SystemClock()
    token = usable_token(cfg.endpoint.token, clock.now())
    try:
        ledger = Ledger.open(database_url(args, cfg), create=True)
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


def usable_token(source: config.TokenSource, now: datetime, *,
                 refused: tuple[str, int] = ("not starting", EXIT_CONFIG)) -> auth.Token:
    """Load the token, or fail with ``refused`` when there is none or it has expired.

    ``refused`` is what is then not done and the exit code: for `run`, not starting, 78.
    """
    from eventcron.delivery import auth

    then, code = refused
    try:
        token = auth.load_token(source)
    except auth.TokenError as e:
        raise Failure(f"{e} eventcron needs the API token (endpoint.token); {then}.",
                      code) from None
    if token.expired(now):
        raise Failure(f"{auth.describe_expiry(token, now)}; get a new one from the console's"
                      f" Settings page. {sentence(then)}.", code)
    warning = auth.loose_permissions(source)
    if warning:
        logs.warn(warning)
    if not token.is_jwt:
        logs.warn(f"{auth.describe_expiry(token, now)}; eventcron cannot warn before it"
                  " expires")
    return token


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo."""
    import asyncio

    from eventcron.service.demo import run_demo

    logs.setup(args.log_format, verbose=args.verbose)
    if not args.verbose:
        logs.quiet()
    return asyncio.run(run_demo(args.duration, keep=args.keep))
