"""The running service's periodic upkeep: heartbeat, observation, retention, watchers.

Each is a loop the daemon starts and cancels; none decides anything about deliveries.
The heartbeat tells ``status`` and ``fire`` who runs; observation refreshes the row counts
behind the metrics and systemd's STATUS= line; retention prunes old final rows; the
watchers ask for a reload when a watched file changes and look for a new token while
deliveries are paused by a 401.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from eventcron import config
from eventcron.clock import Clock, monotonic, rfc3339, to_ms
from eventcron.config.audience import file_stamp
from eventcron.delivery.dispatch import Dispatcher
from eventcron.firing.pipeline import Firing
from eventcron.ledger import HEARTBEAT_INTERVAL, TRANSIENT, Instance, LedgerThread
from eventcron.metrics import Metrics
from eventcron.problems import first_line
from eventcron.service.connection import Connection
from eventcron.service.notify import Notifier
from eventcron.text import count

log = logging.getLogger("eventcron")

OBSERVE_INTERVAL: Final = 15.0  # seconds between refreshes of row counts and STATUS=
RETENTION_INTERVAL: Final = 3600.0  # seconds between prunes of old final rows
WATCH_INTERVAL: Final = 1.0  # seconds between checks of the schedule file for changes
TOKEN_CHECK_INTERVAL: Final = 10.0  # seconds between token re-reads while paused by a 401
TOKEN_WARN_INTERVAL: Final = 6 * 3600.0  # seconds between warnings of an expiring token


class Upkeep:
    """The loops that keep a running service visible, tidy and current."""

    def __init__(self, cfg: config.Config, db: LedgerThread, clock: Clock, *,
                 firing: Firing, dispatcher: Dispatcher, connection: Connection,
                 metrics: Metrics, notifier: Notifier,
                 observe_interval: float = OBSERVE_INTERVAL) -> None:
        self.cfg = cfg
        self.db = db
        self.clock = clock
        self.firing = firing
        self.dispatcher = dispatcher
        self.connection = connection
        self.metrics = metrics
        self.notifier = notifier
        self.observe_interval = observe_interval
        self._counts: dict[str, int] = {}

    def configure(self, cfg: config.Config) -> None:
        """Use a reloaded config (retention, watched files) from the next round on."""
        self.cfg = cfg

    def status_line(self) -> str:
        """Return systemd's STATUS= line: the next fire, rows pending, deliveries, a pause."""
        upcoming = [(t, job.key) for t, job in self.firing.next_fires()]
        next_part = "no fires scheduled"
        if upcoming:
            t, key = min(upcoming)
            next_part = f"next fire {key} at {rfc3339(t)}"
        pending = self._counts.get("pending", 0)
        paused = "; PAUSED: token refused" if self.dispatcher.auth_problem else ""
        return (f"{next_part}; {int(pending):,} pending;"
                f" {self.dispatcher.stats.delivered:,} delivered since start{paused}")

    def token_metric(self) -> None:
        """Publish the token's expiry (0 when it has none)."""
        expires = self.connection.token.expires_at
        self.metrics.token_expiry.set(expires.timestamp() if expires else 0)

    async def heartbeat(self, instance: Callable[[], Instance]) -> None:
        """Write this instance's heartbeat row every few seconds; warn once while failing."""
        failing = False
        while True:
            try:
                await self.db.call(self.db.ledger.heartbeat, instance())
            except TRANSIENT as e:
                if not failing:
                    log.warning("cannot write this instance's heartbeat: %s", first_line(e))
                failing = True
            else:
                failing = False
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog from the event loop: if the loop stalls, pings stop."""
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def observe(self) -> None:
        """Refresh row counts, next-fire and pause metrics, and STATUS=."""
        while True:
            try:
                counts = await self.db.call(self.db.ledger.counts)
            except TRANSIENT as e:
                log.warning("cannot count ledger rows: %s", first_line(e))
            else:
                self._counts = counts
                for state, n in counts.items():
                    self.metrics.rows.labels(state).set(n)
            soonest: dict[str, float] = {}
            for t, job in self.firing.next_fires():
                # One job per zone (`timezone: user`): the schedule fires at the soonest.
                sid = job.schedule.id
                soonest[sid] = min(t.timestamp(), soonest.get(sid, t.timestamp()))
            self.metrics.set_next_fires(soonest)
            self.metrics.paused.set(1 if self.dispatcher.auth_problem else 0)
            self.token_metric()
            self.notifier.status(self.status_line())
            await asyncio.sleep(self.observe_interval)

    async def retain(self) -> None:
        """Prune final rows older than ``delivery.retention``, in short steps, hourly."""
        while True:
            policy = self.cfg.delivery
            now = self.clock.now()
            before = to_ms(now) - round(policy.retention * 1000)
            horizon = to_ms(now) - round(policy.catch_up * 1000)
            try:
                # In short steps: claims, records and /healthz get through in between.
                n = await self.db.prune(before, horizon)
                # The audit log of plans ages like the rows (a handful of rows: one call).
                await self.db.call(self.db.ledger.prune_plans, before)
            except TRANSIENT as e:
                log.warning("cannot prune old ledger rows: %s", first_line(e))
            else:
                if n:
                    log.info("pruned %s older than delivery.retention (%s)",
                             count(n, "delivered, failed, expired, cancelled or suppressed row"),
                             config.format_duration(policy.retention))
            await asyncio.sleep(RETENTION_INTERVAL)

    async def watch_files(self, request_reload: Callable[[str], None]) -> None:
        """Ask for a reload when the schedule file, an audience or the suppression file changes.

        A reload that finds a file invalid is refused and the previous plan keeps running.
        """
        # The snapshot is taken before the reload is asked for, never after it: an edit
        # made while a reload runs differs from it and asks for another.
        seen = self._stamps(as_read=True)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self._stamps() != seen:
                # Editors write in several steps; wait for the file to settle.
                await asyncio.sleep(WATCH_INTERVAL / 2)
                seen = self._stamps()
                request_reload("the file changed")

    async def watch_token(self) -> None:
        """While paused by a 401, look for a new token; now and then warn of its expiry."""
        last_warning = monotonic()
        while True:
            await asyncio.sleep(TOKEN_CHECK_INTERVAL)
            if self.dispatcher.auth_problem is not None and await self.connection.reread():
                source = self.connection.endpoint.token.describe()
                self.dispatcher.resume(f"a new token appeared in {source}")
            if monotonic() - last_warning >= TOKEN_WARN_INTERVAL:
                last_warning = monotonic()
                self.connection.warn(self.clock.now())

    def _stamps(self, *, as_read: bool = False) -> list[tuple[int, int, int] | None]:
        """Return the watched files' stamps; ``as_read``: the suppression file's as loaded.

        An opt-out added to the suppression file suppresses the user's pending rows at the
        reload it asks for. The first snapshot takes that file's stamp from when the plan
        read it, so an opt-out added while the daemon was starting is not missed.
        """
        cfg = self.cfg
        paths: list[Path] = [cfg.path, *(a.file for a in cfg.audiences.values()
                                         if a.file is not None)]
        stamps = [file_stamp(p) for p in paths]
        if cfg.suppress is not None:
            now = file_stamp(cfg.suppress.file)
            stamps.append((cfg.suppress.stamp or now) if as_read else now)
        return stamps
