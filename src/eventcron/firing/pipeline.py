"""Firing as one unit: the plan that runs, the clock, and every occurrence into the ledger.

The clock hands over each occurrence at its nominal time. From there: an occurrence handed
over long after its time (the clock jumped, the machine slept) follows the catch-up rules;
small inline audiences due together are written in one transaction; every other fire runs
on its own, a few at once. A job's watermark never passes an occurrence handed over but
not yet recorded, so a fire the ledger refused is caught up after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from eventcron.campaign import OPTED_OUT, Rules
from eventcron.clock import Clock, rfc3339, to_ms
from eventcron.config import Config
from eventcron.firing import plan
from eventcron.firing.firer import Firer
from eventcron.firing.plan import Job
from eventcron.firing.recovery import RETRIED_FIRE, Recovery, retrying
from eventcron.firing.scheduler import FIRE_LEAD, Clockwork
from eventcron.ledger import TRANSIENT, LedgerThread
from eventcron.metrics import Metrics
from eventcron.problems import first_line
from eventcron.text import count

log = logging.getLogger("eventcron")

MAX_CONCURRENT_FIRES: Final = 8  # fires enqueueing at once; more wait their turn
LATE_AFTER: Final = timedelta(seconds=10)  # a handoff this late: the clock jumped (or slept)
CLOCK_CHECK_INTERVAL: Final = 1.0  # seconds between comparisons of wall and monotonic time
CLOCK_JUMP: Final = 5.0  # seconds of drift that count as a jump of the wall clock
FIRE_TOGETHER_USERS: Final = 100  # inline audiences up to this size are fired in batches
FIRE_TOGETHER_MAX: Final = 500  # fires per batched ledger transaction
RETIRED: Final = "schedule removed or disabled"  # the reason its pending rows are cancelled


@dataclass(slots=True)
class State:
    """The plan that runs now; replaced as a whole on reload."""

    config: Config
    jobs: dict[str, Job] = field(default_factory=dict)
    active: frozenset[str] = frozenset()  # ids of enabled schedules

    def __post_init__(self) -> None:
        self.active = frozenset(s.id for s in self.config.schedules if s.enabled)


class Change(NamedTuple):
    """What applying a new plan did to the jobs."""

    jobs: int
    added: int
    retimed: int
    removed: int
    cancelled: int = 0  # pending rows of schedules that left the plan
    suppressed: int = 0  # pending rows of users on the suppression list


class Prepared(NamedTuple):
    """What preparing the plan at start did to rows already in the ledger."""

    cancelled: int  # pending rows of schedules that left the plan while stopped
    suppressed: int  # pending rows of users on the suppression list


class Firing:
    """The running plan, its clock, and the fires in progress.

    ``rules``: the plan's campaign rules, built once by whoever runs the plan and shared
    with the dispatcher; :meth:`configure` takes the next plan's the same way.
    """

    def __init__(self, db: LedgerThread, clock: Clock, cfg: Config, *,
                 on_enqueued: Callable[[], None], metrics: Metrics,
                 rules: Rules, lead: timedelta = FIRE_LEAD,
                 instance: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.state = State(cfg)
        # ``instance`` (the claim owner name) is written to every fire record this writes.
        self.instance = instance
        self.firer = Firer(db, clock, cfg.delivery, on_enqueued, watermark=self._watermark_for,
                           metrics=metrics, instance=instance,
                           rules=rules)
        self.recovery = Recovery(db, clock, self.firer, instance=instance)
        self.clockwork = Clockwork(self.handoff, lead)
        self._fired = 0
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_FIRES)
        self._tasks: dict[asyncio.Task[None], str] = {}  # task -> schedule id
        self._small: list[tuple[str, datetime]] = []
        self._late: dict[str, list[datetime]] = {}
        # Occurrences handed over but not yet recorded, per job (see the module's docstring).
        self._unrecorded: dict[str, list[datetime]] = {}
        self._stopping = False

    @property
    def fires(self) -> int:
        """Occurrences fired since start, on time or caught up."""
        return self._fired + self.recovery.fires

    @property
    def running(self) -> bool:
        """Tell whether the clock runs."""
        return self.clockwork.running

    def is_active(self, schedule_id: str) -> bool:
        """Tell whether a schedule is enabled in the running plan."""
        return schedule_id in self.state.active

    def next_fires(self) -> list[tuple[datetime, Job]]:
        """Return each job's next nominal time."""
        out = []
        for key in self.clockwork.job_keys():
            t, job = self.clockwork.next_fire(key), self.state.jobs.get(key)
            if t is not None and job is not None:
                out.append((t, job))
        return out

    # --- start, reload, stop -------------------------------------------------------------

    async def prepare(self, now: datetime) -> Prepared:
        """Build the jobs, wind down schedules the ledger knows but the plan lacks, clock them.

        Pending rows of schedules that left the plan while stopped are cancelled, and those
        of users on the suppression list suppressed.
        """
        self.state.jobs = {job.key: job for job in plan.jobs(self.state.config)}
        cancelled = await self._retire(None, now)
        suppressed = await self._suppress_opted_out(now)
        for key, job in self.state.jobs.items():
            self.clockwork.set_job(key, job.timing, now)
        return Prepared(cancelled, suppressed)

    async def recover(self, now: datetime) -> None:
        """Finish interrupted fires, then catch up on occurrences up to ``now``."""
        await self.recovery.finish_interrupted(self.state.jobs)
        await self.recovery.catch_up(self.state.config, self.state.jobs, now)

    def start(self) -> None:
        """Start the clock (after :meth:`recover`)."""
        self.clockwork.start()

    async def configure(self, new: Config, now: datetime, rules: Rules) -> Change:
        """Run a new plan from ``now``: new or retimed jobs start afresh, removed ones retire.

        A job whose timing is unchanged keeps its place; its new data and audience apply
        from its next fire. ``rules``: the new plan's campaign rules.
        Pending rows of users now on the suppression list are suppressed.
        """
        old_active, old_jobs = self.state.active, self.state.jobs
        new_jobs = {job.key: job for job in plan.jobs(new)}
        # From here the new plan is what runs: the dispatcher stops sending for schedules
        # that left it even before their rows are cancelled below.
        self.state = State(new, new_jobs)
        self.firer.configure(new.delivery, rules)
        for key in old_jobs.keys() - new_jobs.keys():
            self.clockwork.remove_job(key)
        retimed: list[Job] = []
        for key, job in new_jobs.items():
            before = old_jobs.get(key)
            if before is not None and before.schedule.fingerprint() == job.schedule.fingerprint():
                continue
            retimed.append(job)
            self.clockwork.set_job(key, job.timing, now)
        added = sum(1 for job in retimed if job.key not in old_jobs)
        cancelled = suppressed = 0
        try:
            for job in retimed:
                # New or retimed jobs start from now: no catch-up for them, ever.
                await self.db.call(self.db.ledger.set_job_state, job.key, job.schedule.id,
                                   job.schedule.fingerprint(), to_ms(now), to_ms(now),
                                   reset=True)
                await self.recovery.skip_passed(new, job, now)
            cancelled = await self._retire(old_active, now)
            suppressed = await self._suppress_opted_out(now)
        except TRANSIENT as e:
            # The plan is applied; only its bookkeeping failed. The dispatcher already
            # refuses rows of retired schedules, and the next start redoes the rest.
            log.error("reload: the ledger failed while applying %s (%s); running the new plan"
                      " anyway", new.path, first_line(e))
        return Change(len(new_jobs), added, len(retimed) - added,
                      len(old_jobs.keys() - new_jobs.keys()), cancelled, suppressed)

    async def stop(self) -> None:
        """Stop the clock and cut fires short (the next start finishes them)."""
        self.clockwork.shutdown()
        # Batched and late fires start on the next loop turn; from now on they do not (the
        # next start catches their occurrences up).
        self._stopping = True
        self._small.clear()
        self._late.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settle(self) -> None:
        """Wait until every occurrence handed over so far is fired (for tests and tools).

        Fires retry while the ledger refuses them, so this waits as long as that lasts.
        """
        while True:
            await asyncio.sleep(0)  # batched and late fires start on the next loop turn
            if not (self._tasks or self._small or self._late):
                return
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def watch_clock(self) -> None:
        """Compare the wall clock with the loop's monotonic one; on a jump, re-check now.

        Occurrences a forward jump passed are then handed over (and caught up) at once,
        not at the scheduler's next planned wake-up.
        """
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

    async def _retire(self, previous: AbstractSet[str] | None, now: datetime) -> int:
        """Wind down schedules that are no longer enabled (``previous``: those that were).

        Their fires in progress stop, their pending rows are cancelled, their interrupted
        fires are closed, and their job state is forgotten, so that enabling one again
        starts it from that moment, as a new schedule, without catching up. Returns the
        number of pending rows cancelled.
        """
        ledger = self.db.ledger
        current = self.state.active
        if previous is None:
            previous = await self.db.call(ledger.known_schedules)
        gone = previous - current
        if not gone:
            return 0
        doomed = [task for task, sid in self._tasks.items() if sid in gone]
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        for key in [k for k in self._unrecorded if k.rsplit("@", 1)[0] in gone]:
            del self._unrecorded[key]
        ids = sorted(gone)
        now_ms = to_ms(now)
        n = await self.db.call(ledger.cancel_schedules, ids, RETIRED, now_ms)
        await self.db.call(ledger.abandon_fires, ids, RETIRED, now_ms, instance=self.instance)
        await self.db.call(ledger.forget_jobs, ids)
        if n:
            log.warning("cancelled %d pending events of removed or disabled schedules: %s",
                        n, ", ".join(ids))
        return n

    async def _suppress_opted_out(self, now: datetime) -> int:
        """Suppress the pending rows of users on the suppression list; return how many.

        At every start and reload, before another attempt: rows a live claim holds are
        left to the dispatcher, which checks the list right before sending.
        """
        suppress = self.state.config.suppress
        if suppress is None or not suppress.users:
            return 0
        n: int = await self.db.call(self.db.ledger.suppress_users, suppress.users, OPTED_OUT,
                                    to_ms(now))
        if n:
            log.info("suppressed %s of users on the suppression list %s",
                     count(n, "pending event"), suppress.file,
                     extra={"suppressed": n, "file": str(suppress.file)})
        return n

    # --- from handoff to the ledger ------------------------------------------------------

    def _watermark_for(self, job: Job, nominal: datetime) -> int:
        pending = [t for t in self._unrecorded.get(job.key, ()) if t < nominal]
        return to_ms(min(pending)) - 1 if pending else to_ms(nominal)

    def _recorded(self, key: str, nominal: datetime) -> None:
        pending = self._unrecorded.get(key)
        if pending is not None and nominal in pending:
            pending.remove(nominal)
            if not pending:
                del self._unrecorded[key]

    def handoff(self, key: str, nominal: datetime) -> None:
        """Take over an occurrence of a job at its nominal time (the clock calls this)."""
        job = self.state.jobs.get(key)
        if job is None:
            return  # removed by a reload a moment ago
        self._unrecorded.setdefault(key, []).append(nominal)
        if nominal < self.clock.now() - LATE_AFTER:
            self._late.setdefault(key, []).append(nominal)
            if sum(len(v) for v in self._late.values()) == 1:
                asyncio.get_running_loop().call_soon(self._start_late_catch_up)
            return
        audience = job.schedule.audience
        if audience.members is not None and audience.size <= FIRE_TOGETHER_USERS:
            # Small inline audiences are collected for a moment and fired in one write: a
            # thousand schedules due in the same minute are then one transaction.
            self._small.append((key, nominal))
            if len(self._small) == 1:
                asyncio.get_running_loop().call_soon(self._start_small_fires)
            return
        self._track(self._fire(key, nominal), key, job.schedule.id)

    def _track(self, coro: Coroutine[Any, Any, None], key: str, schedule_id: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"eventcron-fire-{key}")
        self._tasks[task] = schedule_id
        task.add_done_callback(self._fire_done)

    def _fire_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _start_late_catch_up(self) -> None:
        if self._stopping:
            return
        late, self._late = self._late, {}
        self._track(self._catch_up_late(late), "late", "")

    async def _catch_up_late(self, late: dict[str, list[datetime]]) -> None:
        for key, occurrences in late.items():
            # The current job, looked up after the previous one's awaits: a reload may have
            # removed or retimed it meanwhile.
            job = self.state.jobs.get(key)
            if job is not None:
                await self.recovery.catch_up_late(self.state.config.delivery, job, occurrences)
            for t in occurrences:
                self._recorded(key, t)

    def _start_small_fires(self) -> None:
        if self._stopping:
            return
        batch, self._small = self._small, []
        for start in range(0, len(batch), FIRE_TOGETHER_MAX):
            part = batch[start:start + FIRE_TOGETHER_MAX]
            self._track(self._fire_together(part), part[0][0], "")

    async def _fire_together(self, batch: list[tuple[str, datetime]]) -> None:
        async def step() -> None:
            # The current jobs: a reload may have changed or removed some meanwhile.
            fires = [(job, nominal) for key, nominal in batch
                     if (job := self.state.jobs.get(key)) is not None]
            if fires:
                await self.firer.fire_together(fires)
                self._fired += len(fires)
                for job, nominal in fires:
                    self._recorded(job.key, nominal)

        await retrying(f"fire {len(batch)} schedules", step)

    async def _fire(self, key: str, nominal: datetime) -> None:
        async def step() -> None:
            # The current job: a reload may have changed its data or audience.
            job = self.state.jobs.get(key)
            if job is not None:
                await self.firer.fire(job, nominal)
                self._fired += 1
                self._recorded(key, nominal)

        async with self._slots:
            # However long it takes: a later fire must not advance the job's watermark past
            # this one while it is still missing. Rows already enqueued are not added twice.
            await retrying(f"fire {key} at {rfc3339(nominal)}", step, errors=RETRIED_FIRE)
