"""``eventcron demo``: the daemon against the built-in receiver, with faults, for a while.

Everything happens in a temporary folder and on a free loopback port: no token, no
network, nothing left behind unless ``--keep`` is given.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Final, TextIO

from eventcron import config
from eventcron.clock import SystemClock
from eventcron.delivery import auth
from eventcron.delivery.retry import Decision, Outcome
from eventcron.ledger import Claimed, Ledger
from eventcron.service.daemon import Daemon
from eventcron.testing import Faults, Sink, make_token
from eventcron.text import count

DEMO_DURATION: Final = 20.0  # seconds
DEMO_TOKEN_LIFETIME: Final = 30 * 86400.0  # seconds: long enough not to warn of expiry
DEMO_USERS: Final = ("demo-ada", "demo-grace", "demo-linus", "demo-margaret", "demo-ken")
DEMO_FAULTS: Final = Faults(fail_rate=0.15, fail_status=503, throttle_rate=0.05,
                            retry_after=1.0, seed=7)

SCHEDULE: Final = """\
# The demo's schedule file: one schedule every 3 seconds, one every minute.
version: 1
endpoint:
  url: {url}
  token: {{file: token}}
  timeout: 5s
delivery:
  max_attempts: 6
  initial_backoff: 1s
  max_backoff: 3s
  expires_after: 10m
  catch_up_mode: none
schedules:
  - id: demo-tick
    event_type: "demo:tick"
    every: 3s
    users: [{users}]
    data:
      message: "Hello ${{app_user_id}}"
      scheduled_for: "${{scheduled_for}}"
  - id: demo-minute
    event_type: "demo:minute"
    cron: "* * * * *"
    users: [demo-ops]
"""


class Printer:
    """Prints each delivery outcome as it lands, and counts them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.delivered = 0
        self.retries = 0
        self.failed = 0
        self.users: set[str] = set()

    def __call__(self, row: Claimed, outcome: Outcome, decision: Decision) -> None:
        """Print one outcome."""
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]  # local time, for display
        attempt = decision.attempts if not decision.hold else row.attempts + 1
        if decision.status == "delivered":
            self.delivered += 1
            self.users.add(row.app_user_id)
            note = f"attempt {attempt}" + (" (after a retry)" if attempt > 1 else "")
            label = "delivered"
        elif decision.status == "pending":
            self.retries += 1
            wait = decision.next_attempt_at / 1000 - time.time()
            note = f"{outcome.error}; retrying in {max(0.0, wait):.1f}s"
            label = "retry"
        else:
            self.failed += 1
            note = decision.reason or ""
            label = decision.status
        print(f"  {stamp}  {label:<9}  {row.event_type:<11}  -> {row.app_user_id:<13}  {note}",
              file=self.out, flush=True)


async def run_demo(duration: float = DEMO_DURATION, *, keep: bool = False,
                   out: TextIO | None = None) -> int:
    """Run the demo; return 0 when events were delivered."""
    out = out or sys.stdout
    folder = Path(tempfile.mkdtemp(prefix="eventcron-demo-"))
    secret = secrets.token_urlsafe(32)
    sink = Sink(secret=secret, record_path=folder / "received.jsonl", faults=DEMO_FAULTS)
    await sink.start()
    try:
        token_file = folder / "token"
        token_file.write_text(make_token(secret, expires_in=DEMO_TOKEN_LIFETIME, now=time.time(),
                                         claims={"sub": "eventcron-demo"}))
        os.chmod(token_file, 0o600)
        path = folder / "schedules.yaml"
        path.write_text(SCHEDULE.format(url=sink.url, users=", ".join(DEMO_USERS)))
        cfg = config.load(path)
        token = auth.load_token(cfg.endpoint.token)
        ledger = Ledger.open(cfg.database)
        printer = Printer(out)
        daemon = Daemon(cfg, token, ledger, clock=SystemClock(), on_result=printer,
                        watch=False, drain_timeout=2.0)
        print(f"eventcron demo: sending to a local receiver at {sink.url}\n"
              f"which refuses about 15% of requests (503) and throttles about 5% (429) on"
              f" purpose.\nSchedules: demo:tick every 3s to {count(len(DEMO_USERS), 'user')},"
              f" demo:minute every minute. Running for {duration:g}s (Ctrl-C stops early).\n",
              file=out, flush=True)
        loop = asyncio.get_running_loop()
        loop.call_later(duration, daemon.request_stop)
        started = time.monotonic()
        await daemon.run()
        took = time.monotonic() - started
        received = sink.records
        dupes = sink.duplicates()
        by_status: dict[int, int] = {}
        for r in received:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        statuses = ", ".join(f"{n:,} x {code}" for code, n in sorted(by_status.items()))
        ledger_view = Ledger.open(cfg.database)
        try:
            counts = ledger_view.counts()
        finally:
            ledger_view.close()
        print(f"\nSummary after {took:.0f}s: {count(printer.delivered, 'event')} delivered to"
              f" {count(len(printer.users), 'user')};"
              f" {count(printer.retries, 'retry', 'retries')} after injected faults;"
              f" {printer.failed:,} failed.", file=out)
        print(f"The receiver answered {count(len(received), 'request')} ({statuses}); events"
              f" it accepted twice: {len(dupes):,}.", file=out)
        pending = ""
        if counts["pending"]:
            pending = (" (the pending ones were due after the demo stopped; a restart with"
                       " this ledger would send them: --keep keeps it)" if not keep else
                       " (the pending ones were due after the demo stopped)")
        print("Ledger: " + ", ".join(f"{n:,} {s}" for s, n in counts.items() if n) + pending
              + ".", file=out)
        if keep:
            print(f"Kept {folder} (schedules.yaml, eventcron.db, received.jsonl).", file=out)
        return 0 if printer.delivered else 1
    finally:
        await sink.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
