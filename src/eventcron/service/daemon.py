"""The daemon: wires config, firing, the ledger and delivery together, and runs them.

It decides nothing itself. Start-up order: release claims of dead processes here, build
and recover the plan (firing), then start the clock; the dispatcher sends throughout.
Signal handlers only set events; reloads run one at a time in :meth:`Daemon._serve`,
and shutdown runs in a fixed order.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import random
import signal
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from eventcron import __version__, campaign, config
from eventcron.clock import Clock, monotonic, to_ms
from eventcron.delivery.auth import Token
from eventcron.delivery.dispatch import Dispatcher, ResultHook
from eventcron.firing.pipeline import Firing
from eventcron.firing.recovery import retrying
from eventcron.firing.scheduler import FIRE_LEAD
from eventcron.ledger import (
    TRANSIENT,
    Instance,
    Ledger,
    LedgerThread,
    Owner,
    display_url,
    owner_is_dead,
)
from eventcron.metrics import Health, Metrics, MetricsServer
from eventcron.problems import InvalidInput, first_line
from eventcron.service.audit import Audit
from eventcron.service.connection import Connection
from eventcron.service.notify import Notifier, watchdog_interval
from eventcron.service.upkeep import OBSERVE_INTERVAL, Upkeep
from eventcron.text import count

log = logging.getLogger("eventcron")

DRAIN_TIMEOUT: Final = 10.0  # seconds to let requests in flight finish at shutdown
HEALTH_PROBE_TIMEOUT: Final = 5.0  # seconds a ledger write probe may take
AUDIT_CLOSE_TIMEOUT: Final = 5.0  # seconds shutdown waits for plan records still unwritten
GC_YOUNG_THRESHOLD: Final = 7000  # allocations between young-generation collections


class Daemon:
    """One running eventcron."""

    def __init__(self, cfg: config.Config, token: Token, ledger: Ledger, *, clock: Clock,
                 on_result: ResultHook | None = None, watch: bool = True,
                 drain_timeout: float = DRAIN_TIMEOUT, rng: random.Random | None = None,
                 metrics_listen: tuple[str, int] | None = None,
                 notifier: Notifier | None = None,
                 observe_interval: float = OBSERVE_INTERVAL,
                 fire_lead: timedelta = FIRE_LEAD) -> None:
        self.clock = clock
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.metrics_listen = metrics_listen or cfg.metrics_listen
        self.metrics_server: MetricsServer | None = None
        self.db = LedgerThread(ledger)
        self.identity = Owner.here()
        self.owner = self.identity.format()  # the claim owner and the heartbeat row's name
        self.watch = watch
        self.drain_timeout = drain_timeout
        self.connection = Connection(cfg.endpoint, token, clock)
        # The campaign rules of the plan: built once per plan, shared by firing (each row's
        # verdict) and the dispatcher (the checks right before each send).
        rules = campaign.Rules(cfg)
        self.firing = Firing(self.db, clock, cfg, on_enqueued=self._wake_dispatcher,
                             metrics=self.metrics, lead=fire_lead, instance=self.owner,
                             rules=rules)
        self.dispatcher = Dispatcher(
            self.db, self.connection.sender, cfg.delivery, concurrency=cfg.endpoint.concurrency,
            rate=cfg.endpoint.rate_limit, clock=clock, owner=self.owner, rng=rng,
            on_result=on_result, metrics=self.metrics, is_active=self.firing.is_active,
            rules=rules)
        self.upkeep = Upkeep(cfg, self.db, clock, firing=self.firing,
                             dispatcher=self.dispatcher, connection=self.connection,
                             metrics=self.metrics, notifier=self.notifier,
                             observe_interval=observe_interval)
        self.audit = Audit(self.db, clock, self.owner)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._reload_why: set[str] = set()
        self._reload_lock = asyncio.Lock()
        self.started_at = monotonic()
        self.started_wall = clock.now()
        self.ready = False
        self.on_ready: Callable[[], None] | None = None

    @property
    def config(self) -> config.Config:
        """The configuration running now (firing's plan is the one source of it)."""
        return self.firing.state.config

    def _wake_dispatcher(self) -> None:
        self.dispatcher.wake()

    # --- control ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the daemon to shut down (what SIGTERM and SIGINT do)."""
        self._stop.set()

    def request_reload(self, why: str = "SIGHUP") -> None:
        """Ask the daemon to reload the schedule file (what SIGHUP does)."""
        self._reload_why.add(why)
        self._reload.set()

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig, action in ((signal.SIGTERM, self.request_stop),
                            (signal.SIGINT, self.request_stop),
                            (signal.SIGHUP, self.request_reload)):
            try:
                loop.add_signal_handler(sig, action)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        return installed

    # --- run ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until asked to stop; return the exit code."""
        installed = self._install_signals()
        cfg, upkeep = self.config, self.upkeep
        log.info("eventcron starting: %s from %s, ledger %s, endpoint %s",
                 count(len(cfg.schedules), "schedule"), cfg.path, display_url(self.db.ledger.url),
                 cfg.endpoint.url)
        _warn_rules(cfg)
        self.connection.warn(self.clock.now())
        upkeep.token_metric()
        helpers: list[asyncio.Task[None]] = []

        def start(coro: Coroutine[Any, Any, None], name: str) -> None:
            helpers.append(asyncio.create_task(coro, name=name))

        runner = asyncio.create_task(self.dispatcher.run(), name="eventcron-dispatch")
        try:
            start(upkeep.heartbeat(self._instance), "eventcron-heartbeat")
            interval = watchdog_interval()
            if interval is not None:
                start(upkeep.watchdog(interval), "watchdog")
            if self.metrics_listen is not None:
                host, port = self.metrics_listen
                self.metrics_server = MetricsServer(self.metrics, self.health, host, port)
                await self.metrics_server.start()
            started = self.clock.now()
            released = await self.db.call(self.db.ledger.release_dead_owners,
                                          lambda owner: owner_is_dead(owner, self.owner))
            if released:
                log.info("released %s of eventcron processes on this host that died",
                         count(released, "claim"))
            _note_others(await self.db.call(self.db.ledger.instances), self.owner,
                         to_ms(started))
            prepared = await self.firing.prepare(started)
            await self.audit.started(self.config, prepared.cancelled,
                                     suppressed=prepared.suppressed)
            # Ready once the plan is loaded and the ledger open: catching up on a large
            # backlog may take a while and must not trip systemd's start timeout.
            self.notifier.ready("catching up on fires missed while stopped")
            # Catch-up may take long; a stop request must not wait for it to finish.
            recovery = asyncio.create_task(retrying(
                "catch up after the start", lambda: self.firing.recover(started)),
                name="eventcron-recover")
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({recovery, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not recovery.done():
                recovery.cancel()
                await asyncio.gather(recovery, return_exceptions=True)
                return 0  # the finally block shuts down; the next start resumes the catch-up
            recovery.result()
            _settle_memory()
            self.firing.start()
            self.ready = True
            self.notifier.status(upkeep.status_line())
            if self.on_ready is not None:
                self.on_ready()
            log.info("eventcron ready: %s scheduled", count(len(self.firing.state.jobs), "job"))
            if self.watch:
                start(upkeep.watch_files(self.request_reload), "eventcron-watch")
            start(upkeep.watch_token(), "eventcron-token")
            start(upkeep.observe(), "eventcron-observe")
            start(upkeep.retain(), "eventcron-retention")
            start(self.firing.watch_clock(), "eventcron-clock")
            await self._serve(runner)
        finally:
            self.notifier.stopping()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._shut_down(runner)
            if self.metrics_server is not None:
                await self.metrics_server.stop()
            self.notifier.close()
            loop = asyncio.get_running_loop()
            for sig in installed:
                loop.remove_signal_handler(sig)
        return 0

    async def _serve(self, runner: asyncio.Task[None]) -> None:
        # The one place reloads run, one at a time: SIGHUP and the file watcher only ask.
        # A request that arrives during a reload sets the event again, so it runs next.
        while not self._stop.is_set():
            stop = asyncio.create_task(self._stop.wait())
            reload = asyncio.create_task(self._reload.wait())
            await asyncio.wait({stop, reload, runner}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if runner.done():
                runner.result()  # the dispatcher died: let its exception end the daemon
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                why = " and ".join(sorted(self._reload_why)) or "SIGHUP"
                self._reload_why.clear()
                await self._guarded_reload(why)

    async def _shut_down(self, runner: asyncio.Task[None]) -> None:
        # 1. stop firing (a fire cut short is finished at the next start); 2. drain requests
        # in flight within a bound; 3. leave the rest pending; 4. close clients and the
        # ledger; 5. one summary line.
        await self.firing.stop()
        left = await self.dispatcher.stop(runner, self.drain_timeout)
        await self.connection.aclose()
        await self.audit.close(AUDIT_CLOSE_TIMEOUT)
        try:
            await self.db.call(self.db.ledger.heartbeat, self._instance(stopped=True))
        except TRANSIENT as e:
            log.warning("cannot mark this instance stopped in the ledger: %s", first_line(e))
        await asyncio.to_thread(self.db.close)
        took = monotonic() - self.started_at
        cut = (f"; {count(left, 'request')} in flight cut short stay pending" if left
               else "")
        log.info("eventcron stopped after %s: %s, %s%s", _span(took),
                 count(self.firing.fires, "fire"),
                 self.dispatcher.stats.line(), cut)

    async def health(self) -> Health:
        """Check the scheduler, the dispatcher and that the ledger takes writes."""
        problems = []
        if not self.firing.running:
            problems.append("the scheduler is not running")
        if not self.dispatcher.alive:
            problems.append("the dispatcher has stopped")
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT):
                await self.db.call(self.db.ledger.probe, to_ms(self.clock.now()))
        except TimeoutError:
            problems.append(f"the ledger did not take a write within {HEALTH_PROBE_TIMEOUT:g}s")
        except TRANSIENT as e:
            problems.append(f"the ledger does not take writes: {first_line(e)}")
        return Health(not problems, tuple(problems))

    def _instance(self, *, stopped: bool = False) -> Instance:
        now = to_ms(self.clock.now())
        return Instance(self.owner, self.identity.host, self.identity.pid, __version__,
                        to_ms(self.started_wall), now, now if stopped else None,
                        self.dispatcher.auth_problem is not None, self.config.sha256)

    # --- reload -------------------------------------------------------------------------

    async def reload(self, why: str) -> bool:
        """Load the schedule file again and apply the difference; keep the old on error.

        One reload at a time: a second caller waits for the first to finish, then loads.
        """
        async with self._reload_lock:
            return await self._reload_now(why)

    async def _reload_now(self, why: str) -> bool:
        path = self.config.path
        try:
            new = await asyncio.to_thread(config.load, path)
        except InvalidInput as e:
            self.metrics.reload_failures.inc()
            sha256 = await asyncio.to_thread(_sha256_of, path)
            # Name the file to fix: an audience CSV when all its problems are there.
            at_fault = e.culprits(str(path))
            log.error("reload (%s): %s %s not valid, still running the previous version:\n%s",
                      why, " and ".join(at_fault), "is" if len(at_fault) == 1 else "are",
                      e.render(), extra={"file": str(path), "sha256": sha256, "why": why,
                                         "problems": e.count})
            self.audit.refused(path, sha256, e.count)
            return False
        self.metrics.reloads.inc()
        if new.database != self.config.database:
            log.warning("reload: the database setting changed; that needs a restart and was"
                        " ignored")
        old = self.config
        rules = campaign.Rules(new)
        # Every component takes its new settings the same way: pushed, here, in this order.
        # The dispatcher and firing switch in the same turn of the loop (nothing is awaited
        # in between): no row is sent under the old rules once firing suppresses the rows
        # of new opt-outs, nor for a schedule that left the plan.
        new_token = await self.connection.configure(new.endpoint)
        self.dispatcher.configure(self.connection.sender, new.delivery,
                                  new.endpoint.concurrency, new.endpoint.rate_limit, rules)
        change = await self.firing.configure(new, self.clock.now(), rules)
        self.upkeep.configure(new)
        _warn_rules(new)
        # Recorded once every component runs the new plan, in the background.
        plan = self.audit.reloaded(old, new, change.cancelled, suppressed=change.suppressed)
        if new_token:
            log.info("loaded a new token from %s", new.endpoint.token.describe())
            self.dispatcher.resume("a new token was loaded")
            self.connection.warn(self.clock.now())
        # One sentence, and the same in fields: what changed, by schedule, and what it cost.
        opted_out = (f"; {count(change.suppressed, 'pending event')} of opted-out users"
                     " suppressed" if change.suppressed else "")
        log.info("reloaded %s (%s): %s; %s, %s; %s cancelled%s", path, why, plan.describe(),
                 count(len(new.schedules), "schedule"), count(change.jobs, "job"),
                 count(change.cancelled, "pending event"), opted_out,
                 extra={"file": str(path), "sha256": new.sha256, "why": why,
                        "added": list(plan.added), "removed": list(plan.removed),
                        "changed": {k: list(v) for k, v in plan.changed.items()},
                        "cancelled": change.cancelled, "suppressed": change.suppressed})
        return True

    async def _guarded_reload(self, why: str) -> None:
        """Reload between RELOADING=1 and READY=1; no failure of it ends the daemon."""
        self.notifier.reloading()
        try:
            await self.reload(why)
        except Exception as e:  # noqa: BLE001 - a bad reload must not stop deliveries
            log.error("reload (%s) failed: %s: %s; still running the previous plan", why,
                      type(e).__name__, first_line(e))
        finally:
            if not self._stop.is_set():
                self.notifier.ready(self.upkeep.status_line())


def _warn_rules(cfg: config.Config) -> None:
    """Log the campaign rules that defeat themselves (as ``validate`` warns of them)."""
    for warning in campaign.warnings(cfg):
        log.warning("%s", warning)


def _note_others(instances: list[Instance], me: str, now_ms: int) -> None:
    """Say which other instances run on this ledger (their heartbeats) and that it is safe."""
    others = [i for i in instances
              if i.name != me and i.alive(now_ms) and not owner_is_dead(i.name, me)]
    if others:
        log.info("%s already running on this ledger (%s); that is safe: each event is claimed"
                 " by one instance at a time, and each occurrence enqueued once",
                 "another instance is" if len(others) == 1
                 else f"{count(len(others), 'other instance')} are",
                 "; ".join(f"{i.host} pid {i.pid}" for i in others))


def _sha256_of(path: Path) -> str:
    """Return the sha256 of a file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _settle_memory() -> None:
    """Keep the garbage collector off the hot path once start-up objects exist.

    Everything built at start (the plan, libraries, caches) is frozen out of collection,
    and young-generation collections run ten times less often: a delivery allocates a
    few dozen short-lived objects, and the default threshold (700) made the collector a
    measurable share of the send loop (bench/: about 15% more deliveries per second).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
