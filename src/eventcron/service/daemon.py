"""The daemon: wires the plan, the clockwork, the firer and the dispatcher together.

Start-up order: cancel rows of schedules no longer in the file, finish fires a crash
interrupted, catch up on occurrences missed while down, then let the clockwork fire.
Signal handlers only set events; reload and shutdown run here, in a fixed order.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import shlex
import signal
import zoneinfo
from collections.abc import Awaitable, Callable, Coroutine
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.exc import SQLAlchemyError

from eventcron import __version__, config
from eventcron.clock import Clock, from_ms, monotonic, rfc3339, to_ms
from eventcron.config.audience import AudienceError, file_stamp
from eventcron.delivery import auth
from eventcron.delivery.auth import Token, TokenError
from eventcron.delivery.dispatch import Dispatcher, ResultHook
from eventcron.delivery.sender import Sender
from eventcron.firing import catchup, plan
from eventcron.firing.firer import Firer
from eventcron.firing.scheduler import FIRE_LEAD, Clockwork
from eventcron.ledger import (
    HEARTBEAT_INTERVAL,
    Instance,
    Ledger,
    LedgerThread,
    Owner,
    display_url,
    owner_is_dead,
)
from eventcron.metrics import Health, Metrics, MetricsServer
from eventcron.problems import InvalidInput, first_line
from eventcron.service.notify import Notifier, watchdog_interval

log = logging.getLogger("eventcron")

DRAIN_TIMEOUT: Final = 10.0  # seconds to let requests in flight finish at shutdown
WATCH_INTERVAL: Final = 1.0  # seconds between checks of the schedule file for changes
TOKEN_CHECK_INTERVAL: Final = 10.0  # seconds between token re-reads while paused by a 401
TOKEN_WARN_INTERVAL: Final = 6 * 3600.0  # seconds between warnings of an expiring token
MAX_CONCURRENT_FIRES: Final = 8  # fires enqueueing at once; more wait their turn
FIRE_RETRY_MAX: Final = 60.0  # seconds between tries of a fire the ledger refuses
LATE_AFTER: Final = timedelta(seconds=10)  # a handoff this late: the clock jumped (or slept)
CLOCK_CHECK_INTERVAL: Final = 1.0  # seconds between comparisons of wall and monotonic time
CLOCK_JUMP: Final = 5.0  # seconds of drift that count as a jump of the wall clock
FIRE_TOGETHER_USERS: Final = 100  # inline audiences up to this size are fired in batches
FIRE_TOGETHER_MAX: Final = 500  # fires per batched ledger transaction
OBSERVE_INTERVAL: Final = 15.0  # seconds between refreshes of row counts and STATUS=
RETENTION_INTERVAL: Final = 3600.0  # seconds between prunes of old final rows
HEALTH_PROBE_TIMEOUT: Final = 5.0  # seconds a ledger write probe may take
GC_YOUNG_THRESHOLD: Final = 7000  # allocations between young-generation collections


@dataclass(slots=True)
class State:
    """What the daemon is running now; replaced as a whole on reload."""

    config: config.Config
    jobs: dict[str, plan.Job] = field(default_factory=dict)
    active: frozenset[str] = frozenset()  # ids of enabled schedules

    def __post_init__(self) -> None:
        self.active = frozenset(s.id for s in self.config.schedules if s.enabled)


class Daemon:
    """One running eventcron."""

    def __init__(self, cfg: config.Config, token: Token, ledger: Ledger, *, clock: Clock,
                 on_result: ResultHook | None = None, watch: bool = True,
                 drain_timeout: float = DRAIN_TIMEOUT, rng: random.Random | None = None,
                 metrics_listen: tuple[str, int] | None = None,
                 notifier: Notifier | None = None,
                 observe_interval: float = OBSERVE_INTERVAL,
                 fire_lead: timedelta = FIRE_LEAD) -> None:
        self.state = State(cfg)
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.metrics_listen = metrics_listen or cfg.metrics_listen
        self.metrics_server: MetricsServer | None = None
        self._counts: dict[str, int] = {}
        self.observe_interval = observe_interval
        self.token = token
        self.clock = clock
        self.db = LedgerThread(ledger)
        self.identity = Owner.here()
        self.owner = self.identity.format()  # the claim owner and the heartbeat row's name
        self.watch = watch
        self.drain_timeout = drain_timeout
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._reload_why: set[str] = set()
        self._reload_lock = asyncio.Lock()
        self._fire_slots = asyncio.Semaphore(MAX_CONCURRENT_FIRES)
        self._fire_tasks: dict[asyncio.Task[None], str] = {}  # task -> schedule id
        self._small_fires: list[tuple[str, datetime]] = []
        self._late: dict[str, list[datetime]] = {}
        self._senders_closing: set[asyncio.Task[None]] = set()
        self.sender = self._new_sender(cfg.endpoint, token)
        self.dispatcher = Dispatcher(
            self.db, self.sender, cfg.delivery, concurrency=cfg.endpoint.concurrency,
            rate=cfg.endpoint.rate_limit, clock=clock, owner=self.owner, rng=rng,
            on_result=on_result, metrics=self.metrics, is_active=self._is_active)
        self.firer = Firer(self.db, clock, lambda: self.state.config.delivery,
                           self.dispatcher.wake, metrics=self.metrics)
        self.firer.watermark = self._watermark_for
        # Occurrences handed over but not yet recorded, per job: a job's watermark never
        # passes one of them, so a fire the ledger refused is caught up after a restart.
        self._unrecorded: dict[str, list[datetime]] = {}
        self.clockwork = Clockwork(self._handoff, fire_lead)
        self.started_at = monotonic()
        self.started_wall = clock.now()
        self.fires = 0
        self.ready = False
        self.on_ready: Callable[[], None] | None = None

    @staticmethod
    def _new_sender(endpoint: config.Endpoint, token: Token) -> Sender:
        return Sender(endpoint.url, token, timeout=endpoint.timeout,
                      concurrency=endpoint.concurrency, ca_bundle=endpoint.ca_bundle)

    def _is_active(self, schedule_id: str) -> bool:
        return schedule_id in self.state.active

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
        cfg = self.state.config
        log.info("eventcron starting: %d schedules from %s, ledger %s, endpoint %s",
                 len(cfg.schedules), cfg.path, display_url(self.db.ledger.url),
                 cfg.endpoint.url)
        self._warn_token(self.clock.now())
        self._token_metric()
        helpers: list[asyncio.Task[None]] = []
        runner = asyncio.create_task(self.dispatcher.run(), name="eventcron-dispatch")
        try:
            helpers.append(asyncio.create_task(self._heartbeat(), name="eventcron-heartbeat"))
            interval = watchdog_interval()
            if interval is not None:
                helpers.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
            if self.metrics_listen is not None:
                host, port = self.metrics_listen
                self.metrics_server = MetricsServer(self.metrics, self.health, host, port)
                await self.metrics_server.start()
            started = await self._prepare()
            # Ready once the plan is loaded and the ledger open: catching up on a large
            # backlog may take a while and must not trip systemd's start timeout.
            self.notifier.ready("catching up on fires missed while stopped")
            # Catch-up may take long; a stop request must not wait for it to finish.
            recovery = asyncio.create_task(
                self._retrying("catch up after the start", lambda: self._recover(started)),
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
            self.clockwork.start()
            self.ready = True
            self.notifier.status(await self._status_line())
            if self.on_ready is not None:
                self.on_ready()
            log.info("eventcron ready: %d jobs scheduled", len(self.state.jobs))
            if self.watch:
                helpers.append(asyncio.create_task(self._watch_files(), name="eventcron-watch"))
            helpers.append(asyncio.create_task(self._watch_token(), name="eventcron-token"))
            helpers.append(asyncio.create_task(self._observe(), name="eventcron-observe"))
            helpers.append(asyncio.create_task(self._retain(), name="eventcron-retention"))
            helpers.append(asyncio.create_task(self._watch_clock(), name="eventcron-clock"))
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
        # 1. stop firing; 2. drain requests in flight within a bound; 3. leave the rest
        # pending; 4. close clients and the ledger; 5. one summary line.
        self.clockwork.shutdown()
        for task in list(self._fire_tasks):
            task.cancel()  # a fire cut short is finished at the next start
        await asyncio.gather(*self._fire_tasks, return_exceptions=True)
        left = await self.dispatcher.stop(runner, self.drain_timeout)
        await self.sender.aclose()
        await asyncio.gather(*self._senders_closing, return_exceptions=True)
        try:
            await self.db.call(self.db.ledger.heartbeat, self._instance(stopped=True))
        except (SQLAlchemyError, OSError) as e:
            log.warning("cannot mark this instance stopped in the ledger: %s", first_line(e))
        await asyncio.to_thread(self.db.close)
        took = monotonic() - self.started_at
        cut = f"; {left} requests in flight were cut short and stay pending" if left else ""
        log.info("eventcron stopped after %s: %d fires, %s%s", _span(took), self.fires,
                 self.dispatcher.stats.line(), cut)

    # --- health, status, watchdog, retention --------------------------------------------

    async def health(self) -> Health:
        """Check the scheduler, the dispatcher and that the ledger takes writes."""
        problems = []
        if not self.clockwork.running:
            problems.append("the scheduler is not running")
        if not self.dispatcher.alive:
            problems.append("the dispatcher has stopped")
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT):
                await self.db.call(self.db.ledger.probe, to_ms(self.clock.now()))
        except TimeoutError:
            problems.append(f"the ledger did not take a write within {HEALTH_PROBE_TIMEOUT:g}s")
        except (SQLAlchemyError, OSError) as e:
            problems.append(f"the ledger does not take writes: {first_line(e)}")
        return Health(not problems, tuple(problems))

    def _instance(self, *, stopped: bool = False) -> Instance:
        now = to_ms(self.clock.now())
        return Instance(self.owner, self.identity.host, self.identity.pid, __version__,
                        to_ms(self.started_wall), now, now if stopped else None,
                        self.dispatcher.auth_problem is not None, self.state.config.sha256)

    async def _heartbeat(self) -> None:
        # Tells `status` and `fire` that this instance runs, and which plan it runs.
        failing = False
        while True:
            try:
                await self.db.call(self.db.ledger.heartbeat, self._instance())
            except (SQLAlchemyError, OSError) as e:
                if not failing:
                    log.warning("cannot write this instance's heartbeat: %s", first_line(e))
                failing = True
            else:
                failing = False
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop itself: if the loop stalls, the pings stop and
        # systemd restarts the service.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _status_line(self) -> str:
        upcoming = [(t, key) for key in self.clockwork.job_keys()
                    if (t := self.clockwork.next_fire(key)) is not None]
        pending = self._counts.get("pending", 0)
        next_part = "no fires scheduled"
        if upcoming:
            t, key = min(upcoming)
            next_part = f"next fire {key} at {rfc3339(t)}"
        paused = "; PAUSED: token refused" if self.dispatcher.auth_problem else ""
        return (f"{next_part}; {int(pending):,} pending;"
                f" {self.dispatcher.stats.delivered:,} delivered since start{paused}")

    async def _observe(self) -> None:
        while True:
            try:
                counts = await self.db.call(self.db.ledger.counts)
            except (SQLAlchemyError, OSError) as e:
                log.warning("cannot count ledger rows: %s", first_line(e))
            else:
                self._counts = counts
                for state, n in counts.items():
                    self.metrics.rows.labels(state).set(n)
            soonest: dict[str, float] = {}
            for key in self.clockwork.job_keys():
                t = self.clockwork.next_fire(key)
                job = self.state.jobs.get(key)
                if t is not None and job is not None:
                    # One job per zone (`timezone: user`): the schedule fires at the soonest.
                    sid = job.schedule.id
                    soonest[sid] = min(t.timestamp(), soonest.get(sid, t.timestamp()))
            self.metrics.set_next_fires(soonest)
            self.metrics.paused.set(1 if self.dispatcher.auth_problem else 0)
            self._token_metric()
            self.notifier.status(await self._status_line())
            await asyncio.sleep(self.observe_interval)

    def _token_metric(self) -> None:
        expires = self.token.expires_at
        self.metrics.token_expiry.set(expires.timestamp() if expires else 0)

    async def _retain(self) -> None:
        while True:
            policy = self.state.config.delivery
            now = self.clock.now()
            before = to_ms(now) - round(policy.retention * 1000)
            horizon = to_ms(now) - round(policy.catch_up * 1000)
            try:
                # In short steps: claims, records and /healthz get through in between.
                n = await self.db.prune(before, horizon)
            except (SQLAlchemyError, OSError) as e:
                log.warning("cannot prune old ledger rows: %s", first_line(e))
            else:
                if n:
                    log.info("pruned %d delivered, failed, expired or cancelled rows older"
                             " than delivery.retention (%s)", n,
                             config.format_duration(policy.retention))
            await asyncio.sleep(RETENTION_INTERVAL)

    # --- start-up -----------------------------------------------------------------------

    async def _prepare(self) -> datetime:
        """Release dead claims, cancel removed schedules, build the jobs; return "now"."""
        ledger = self.db.ledger
        now = self.clock.now()
        released = await self.db.call(ledger.release_dead_owners,
                                      lambda owner: owner_is_dead(owner, self.owner))
        if released:
            log.info("released %d claims of eventcron processes on this host that died",
                     released)
        jobs = {job.key: job for job in plan.jobs(self.state.config)}
        self.state.jobs = jobs
        await self._retire(None, now)
        for key, job in jobs.items():
            self.clockwork.set_job(key, job.timing, now)
        return now

    async def _recover(self, now: datetime) -> None:
        """Finish interrupted fires, then catch up on occurrences up to ``now``."""
        await self._finish_interrupted(self.state.jobs)
        await self._catch_up(self.state.jobs, now)

    async def _retire(self, previous: AbstractSet[str] | None, now: datetime) -> None:
        """Wind down schedules that are no longer enabled (``previous``: those that were).

        Their fires in progress stop, their pending rows are cancelled, their interrupted
        fires are closed, and their job state is forgotten, so that enabling one again
        starts it from that moment, as a new schedule, without catching up.
        """
        current = self.state.active
        ledger = self.db.ledger
        if previous is not None:
            gone = previous - current
        else:
            known = await self.db.call(ledger.known_schedules)
            gone = known - current
        if not gone:
            return
        for task, schedule_id in list(self._fire_tasks.items()):
            if schedule_id in gone:
                task.cancel()
        await asyncio.gather(*(t for t, sid in self._fire_tasks.items() if sid in gone),
                             return_exceptions=True)
        for key in [k for k in self._unrecorded if k.rsplit("@", 1)[0] in gone]:
            del self._unrecorded[key]
        ids = sorted(gone)
        now_ms = to_ms(now)
        n = await self.db.call(ledger.cancel_schedules, ids, "schedule removed or disabled",
                               now_ms)
        await self.db.call(ledger.abandon_fires, ids, "schedule removed or disabled", now_ms)
        await self.db.call(ledger.forget_jobs, ids)
        if n:
            log.warning("cancelled %d pending events of removed or disabled schedules: %s",
                        n, ", ".join(ids))

    async def _finish_interrupted(self, jobs: dict[str, plan.Job]) -> None:
        for record in await self.db.call(self.db.ledger.unfinished_fires):
            job = jobs.get(f"{record.schedule_id}@{record.zone}")
            nominal = from_ms(record.scheduled_for)
            if job is None:
                # Its schedule no longer fires in that zone (its users moved, or it is gone).
                await self.db.call(self.db.ledger.abandon_fires, [record.schedule_id],
                                   "no longer part of the plan", to_ms(self.clock.now()),
                                   record.zone, record.scheduled_for)
                continue
            log.info("finishing %s at %s, interrupted before every user was enqueued",
                     job.key, rfc3339(nominal))
            await self.firer.fire(job, nominal, "finishing an interrupted fire")

    async def _catch_up(self, jobs: dict[str, plan.Job], now: datetime) -> None:
        ledger = self.db.ledger
        states = await self.db.call(ledger.job_states)
        policy = self.state.config.delivery
        now_ms = to_ms(now)
        for key, job in jobs.items():
            fingerprint = job.schedule.fingerprint()
            state = states.get(key)
            if state is None or state[0] != fingerprint:
                # A new or edited schedule starts from now: nothing fires by surprise.
                await self.db.call(ledger.set_job_state, key, job.schedule.id, fingerprint,
                                   now_ms, now_ms, reset=True)
                await self._skip_passed(job, now)
                continue
            watermark = from_ms(state[1])
            occurrences, capped = await asyncio.to_thread(catchup.missed, job.timing,
                                                          watermark, now)
            if occurrences:
                # Later occurrences may be recorded already (the watermark was held back by
                # an earlier one the ledger refused): only the others were missed.
                done = await self.db.call(ledger.recorded_fires, job.schedule.id, job.zone,
                                          state[1], now_ms)
                occurrences = [t for t in occurrences if to_ms(t) not in done]
            if not occurrences:
                continue
            decision = catchup.decide(occurrences, now, policy.catch_up, policy.catch_up_mode,
                                      capped=capped)
            log.info("catch-up %s: %s", key, decision.describe())
            await self._apply_catch_up(job, decision, now_ms)
            await self.db.call(ledger.set_job_state, key, job.schedule.id, fingerprint,
                               now_ms, now_ms)

    async def _skip_passed(self, job: plan.Job, now: datetime) -> None:
        """Record and announce the occurrence a new or retimed job's load passed over."""
        window = self.state.config.delivery.catch_up
        t = await asyncio.to_thread(catchup.passed_before_load, job.timing, now, window)
        if t is None:
            return
        if not await self.db.call(self.db.ledger.skip_passed, job.schedule.id, job.zone,
                                  to_ms(t), to_ms(now)):
            return  # already fired or recorded, by this instance earlier or another one
        local = t.astimezone(zoneinfo.ZoneInfo(job.zone))
        # The command names the file and the ledger outright: an operator's shell has neither
        # the service's $STATE_DIRECTORY nor its environment file.
        command = shlex.join(["eventcron", "--config", str(self.state.config.path.absolute()),
                              "--database", display_url(self.db.ledger.url), "fire",
                              job.schedule.id, "--occurrence", rfc3339(t)])
        log.warning("schedule %s: its occurrence at %s (%s %s) passed before the schedule"
                    " was loaded and is skipped; to send it anyway: %s", job.schedule.id,
                    rfc3339(t), local.isoformat(timespec="seconds"), job.zone, command)

    # --- firing -------------------------------------------------------------------------

    def _watermark_for(self, job: plan.Job, nominal: datetime) -> int:
        pending = [t for t in self._unrecorded.get(job.key, ()) if t < nominal]
        return to_ms(min(pending)) - 1 if pending else to_ms(nominal)

    def _recorded(self, key: str, nominal: datetime) -> None:
        pending = self._unrecorded.get(key)
        if pending is not None and nominal in pending:
            pending.remove(nominal)
            if not pending:
                del self._unrecorded[key]

    def _handoff(self, key: str, nominal: datetime) -> None:
        job = self.state.jobs.get(key)
        if job is None:
            return  # removed by a reload a moment ago
        self._unrecorded.setdefault(key, []).append(nominal)
        if nominal < self.clock.now() - LATE_AFTER:
            # Handed over long after its time: the clock jumped forward, or the machine
            # slept. Such occurrences follow the catch-up rules, like downtime.
            self._late.setdefault(key, []).append(nominal)
            if sum(len(v) for v in self._late.values()) == 1:
                asyncio.get_running_loop().call_soon(self._start_late_catch_up)
            return
        audience = job.schedule.audience
        if audience.members is not None and audience.size <= FIRE_TOGETHER_USERS:
            # Small inline audiences are collected for a moment and fired in one write: a
            # thousand schedules due in the same minute are then one transaction.
            self._small_fires.append((key, nominal))
            if len(self._small_fires) == 1:
                asyncio.get_running_loop().call_soon(self._start_small_fires)
            return
        self._track(self._fire(key, nominal), key, job.schedule.id)

    def _start_late_catch_up(self) -> None:
        late, self._late = self._late, {}
        self._track(self._catch_up_late(late), "late", "")

    async def _catch_up_late(self, late: dict[str, list[datetime]]) -> None:
        policy = self.state.config.delivery
        now = self.clock.now()
        for key, occurrences in late.items():
            job = self.state.jobs.get(key)
            if job is not None:
                decision = catchup.decide(sorted(occurrences), now, policy.catch_up,
                                          policy.catch_up_mode)
                log.warning("catch-up %s: %s", key, decision.describe("as the clock jumped"))
                await self._retrying(f"catch up {key}", functools.partial(
                    self._apply_catch_up, job, decision, to_ms(now)))
            for t in occurrences:
                self._recorded(key, t)

    async def _retrying(self, what: str, step: Callable[[], Awaitable[object]]) -> None:
        """Run ``step`` until the ledger lets it through (it is safe to repeat)."""
        attempt = 0
        while True:
            try:
                await step()
                return
            except (SQLAlchemyError, OSError) as e:
                attempt += 1
                delay = min(FIRE_RETRY_MAX, 2.0 ** attempt)
                log.error("cannot %s (%s); trying again in %.0fs", what, first_line(e), delay)
                await asyncio.sleep(delay)

    async def _apply_catch_up(self, job: plan.Job, decision: catchup.CatchUp,
                              now_ms: int) -> None:
        by_reason: dict[str, list[int]] = {}
        for t, reason in decision.skip:
            by_reason.setdefault(reason, []).append(to_ms(t))
        for reason, times in by_reason.items():
            await self.db.call(self.db.ledger.record_skipped, job.schedule.id, job.zone, times,
                               reason, now_ms)
        for t in decision.fire:
            await self.firer.fire(job, t, "catch-up")
            self.fires += 1

    async def _watch_clock(self) -> None:
        # The wall clock against the loop's monotonic one: a jump is logged, and the
        # scheduler re-checks at once, so missed occurrences are handed over (and caught up)
        # now rather than at its next planned wake-up.
        loop = asyncio.get_running_loop()
        wall, mono = self.clock.now(), loop.time()
        while True:
            await asyncio.sleep(CLOCK_CHECK_INTERVAL)
            now_wall, now_mono = self.clock.now(), loop.time()
            drift = (now_wall - wall).total_seconds() - (now_mono - mono)
            wall, mono = now_wall, now_mono
            if abs(drift) >= CLOCK_JUMP:
                log.warning("the clock jumped %s by %.0fs; re-checking the schedules",
                            "forward" if drift > 0 else "back", abs(drift))
                self.clockwork.wakeup()

    def _track(self, coro: Coroutine[Any, Any, None], key: str, schedule_id: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"eventcron-fire-{key}")
        self._fire_tasks[task] = schedule_id
        task.add_done_callback(self._fire_done)

    def _start_small_fires(self) -> None:
        batch, self._small_fires = self._small_fires, []
        for start in range(0, len(batch), FIRE_TOGETHER_MAX):
            part = batch[start:start + FIRE_TOGETHER_MAX]
            self._track(self._fire_together(part), part[0][0], "")

    async def _fire_together(self, batch: list[tuple[str, datetime]]) -> None:
        attempt = 0
        while True:
            fires = [(job, nominal) for key, nominal in batch
                     if (job := self.state.jobs.get(key)) is not None]
            if not fires:
                return
            try:
                await self.firer.fire_together(fires)
                self.fires += len(fires)
                for job, nominal in fires:
                    self._recorded(job.key, nominal)
                return
            except (SQLAlchemyError, OSError) as e:
                attempt += 1
                delay = min(FIRE_RETRY_MAX, 2.0 ** attempt)
                log.error("cannot fire %d schedules (%s); trying again in %.0fs", len(fires),
                          first_line(e), delay)
                await asyncio.sleep(delay)

    def _fire_done(self, task: asyncio.Task[None]) -> None:
        self._fire_tasks.pop(task, None)

    async def _fire(self, key: str, nominal: datetime) -> None:
        async with self._fire_slots:
            attempt = 0
            while True:
                # The current job: a reload may have changed its data or audience.
                job = self.state.jobs.get(key)
                if job is None:
                    return
                try:
                    await self.firer.fire(job, nominal)
                    self.fires += 1
                    self._recorded(key, nominal)
                    return
                except (SQLAlchemyError, OSError, AudienceError) as e:
                    # Keep trying, however long it takes: a later fire must not advance the
                    # job's watermark past this one while it is still missing. Rows already
                    # enqueued are not enqueued twice.
                    attempt += 1
                    delay = min(FIRE_RETRY_MAX, 2.0 ** attempt)
                    log.error("cannot fire %s at %s (%s); trying again in %.0fs", key,
                              rfc3339(nominal), first_line(e), delay)
                    await asyncio.sleep(delay)

    # --- reload -------------------------------------------------------------------------

    async def reload(self, why: str) -> bool:
        """Load the schedule file again and apply the difference; keep the old on error.

        One reload at a time: a second caller waits for the first to finish, then loads.
        """
        async with self._reload_lock:
            return await self._reload_now(why)

    async def _reload_now(self, why: str) -> bool:
        path = self.state.config.path
        try:
            new = await asyncio.to_thread(config.load, path)
        except InvalidInput as e:
            self.metrics.reload_failures.inc()
            log.error("reload (%s): %s is not valid, still running the previous version:\n%s",
                      why, path, e.render())
            return False
        self.metrics.reloads.inc()
        old = self.state.config
        if new.database != old.database:
            log.warning("reload: the database setting changed; that needs a restart and was"
                        " ignored")
        now = self.clock.now()
        old_active = self.state.active
        new_jobs = {job.key: job for job in plan.jobs(new)}
        old_jobs = self.state.jobs
        # From here the new plan is what runs: the dispatcher stops sending for schedules
        # that left it even before their rows are cancelled below.
        self.state = State(new, new_jobs)
        retimed: list[plan.Job] = []
        for key in old_jobs.keys() - new_jobs.keys():
            self.clockwork.remove_job(key)
        for key, job in new_jobs.items():
            before = old_jobs.get(key)
            if before is not None and before.schedule.fingerprint() == job.schedule.fingerprint():
                continue  # same timing: the job keeps its place, the new data applies
            retimed.append(job)
            self.clockwork.set_job(key, job.timing, now)
        added = sum(1 for job in retimed if job.key not in old_jobs)
        try:
            for job in retimed:
                # New or retimed jobs start from now: no catch-up for them, ever.
                await self.db.call(self.db.ledger.set_job_state, job.key, job.schedule.id,
                                   job.schedule.fingerprint(), to_ms(now), to_ms(now),
                                   reset=True)
                await self._skip_passed(job, now)
            await self._retire(old_active, now)
        except (SQLAlchemyError, OSError) as e:
            # The plan is applied; only its bookkeeping failed. The dispatcher already
            # refuses rows of retired schedules, and the next start redoes the rest.
            log.error("reload: the ledger failed while applying %s (%s); running the new plan"
                      " anyway", path, first_line(e))
        await self._apply_endpoint(old, new)
        removed = len(old_jobs.keys() - new_jobs.keys())
        log.info("reloaded %s (%s): %d schedules, %d jobs (%d new, %d retimed, %d removed)",
                 path, why, len(new.schedules), len(new_jobs), added, len(retimed) - added,
                 removed)
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
                self.notifier.ready(await self._status_line())

    async def _apply_endpoint(self, old: config.Config, new: config.Config) -> None:
        token = self.token
        try:
            fresh = await asyncio.to_thread(auth.load_token, new.endpoint.token)
        except TokenError as e:
            log.error("reload: %s; keeping the token already loaded", e)
        else:
            if fresh.expired(self.clock.now()):
                log.error("reload: %s; keeping the token already loaded",
                          auth.describe_expiry(fresh, self.clock.now()))
            else:
                token = fresh
        changed_token = token.value != self.token.value
        self.token = token
        e_old, e_new = old.endpoint, new.endpoint
        if (e_old.url, e_old.timeout, e_old.concurrency) != (e_new.url, e_new.timeout,
                                                             e_new.concurrency):
            previous = self.sender
            self.sender = self._new_sender(e_new, token)
            task = asyncio.create_task(_close_later(previous, e_old.timeout + 1))
            self._senders_closing.add(task)
            task.add_done_callback(self._senders_closing.discard)
        else:
            self.sender.set_token(token)
        self.dispatcher.reconfigure(self.sender, new.delivery, e_new.concurrency,
                                    e_new.rate_limit)
        if changed_token:
            log.info("loaded a new token from %s", e_new.token.describe())
            self.dispatcher.resume("a new token was loaded")
            self._warn_token(self.clock.now())

    # --- watchers -----------------------------------------------------------------------

    def _watched_files(self) -> list[Path]:
        cfg = self.state.config
        return [cfg.path, *(a.file for a in cfg.audiences.values() if a.file is not None)]

    async def _watch_files(self) -> None:
        # The snapshot is taken before the reload is asked for, never after it: an edit
        # made while a reload runs differs from it and asks for another.
        seen = _stats(self._watched_files())
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if _stats(self._watched_files()) != seen:
                # Editors write in several steps; wait for the file to settle.
                await asyncio.sleep(WATCH_INTERVAL / 2)
                seen = _stats(self._watched_files())
                self.request_reload("the file changed")

    async def _watch_token(self) -> None:
        last_warning = monotonic()
        while True:
            await asyncio.sleep(TOKEN_CHECK_INTERVAL)
            if self.dispatcher.auth_problem is not None:
                await self._reread_token()
            if monotonic() - last_warning >= TOKEN_WARN_INTERVAL:
                last_warning = monotonic()
                self._warn_token(self.clock.now())

    async def _reread_token(self) -> None:
        source = self.state.config.endpoint.token
        try:
            fresh = await asyncio.to_thread(auth.load_token, source)
        except TokenError:
            return
        if fresh.value != self.token.value and not fresh.expired(self.clock.now()):
            self.token = fresh
            self.sender.set_token(fresh)
            self.dispatcher.resume(f"a new token appeared in {source.describe()}")

    def _warn_token(self, now: datetime) -> None:
        if self.token.expired(now):
            log.error("%s: deliveries will be refused (401) until a new token is loaded",
                      auth.describe_expiry(self.token, now))
        elif self.token.expires_soon(now):
            log.warning("%s: get a new one from the console's Settings page and reload",
                        auth.describe_expiry(self.token, now))


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


def _stats(paths: list[Path]) -> list[tuple[int, int, int] | None]:
    return [file_stamp(p) for p in paths]


async def _close_later(sender: Sender, delay: float) -> None:
    await asyncio.sleep(delay)
    await sender.aclose()


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
