"""APScheduler 3 as the clock: one job per (schedule, zone), handing over nominal times.

APScheduler decides *when* to wake up; eventcron's own :mod:`eventcron.timing` decides the
fire times (APScheduler's CronTrigger does not follow crontab(5)). Each job fires
:data:`FIRE_LEAD` before its nominal time, so the rows are in the ledger when they are due,
and hands the nominal time, never ``now()``, to the firer. Jobs never run in APScheduler's
executors: the handoff only queues the fire, so a busy loop cannot make APScheduler skip
one (no misfire grace, no coalescing, no instance limit is ever reached).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from eventcron.timing import Timing

FIRE_LEAD: Final = timedelta(seconds=2)  # enqueue this long before the nominal time
EXECUTOR: Final = "eventcron"

log = logging.getLogger("eventcron.clockwork")

Handoff = Callable[[str, datetime], None]


class LeadTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires ``lead`` before each occurrence of a timing, after ``start_after``."""

    __slots__ = ("lead", "start_after", "timing")

    def __init__(self, timing: Timing, start_after: datetime, lead: timedelta) -> None:
        self.timing = timing
        self.start_after = start_after
        self.lead = lead

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        """Return the next wake-up: the next nominal time minus the lead."""
        after = self.start_after if previous_fire_time is None else (
            previous_fire_time + self.lead)
        nominal = self.timing.next_after(after)
        return None if nominal is None else nominal - self.lead

    def __str__(self) -> str:
        return f"eventcron[{self.timing!r}]"


class HandoffExecutor(BaseExecutor):  # type: ignore[misc]
    """Passes each run time, as a nominal time, to the handoff; runs nothing itself."""

    def __init__(self, handoff: Handoff, lead: timedelta) -> None:
        super().__init__()
        self._handoff = handoff
        self._lead = lead

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        # The extension point APScheduler documents for executors; AsyncIOScheduler calls
        # it on its event loop, the one running here.
        for run_time in run_times:
            self._handoff(job.id, (run_time + self._lead).astimezone(UTC))
        # submit_job counts the instance after this returns; uncount it on the next turn.
        asyncio.get_running_loop().call_soon(self._run_job_success, job.id, [])


class Clockwork:
    """The scheduler and its jobs."""

    def __init__(self, handoff: Handoff, lead: timedelta = FIRE_LEAD) -> None:
        self.lead = lead
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_executor(HandoffExecutor(handoff, lead), alias=EXECUTOR)

    def start(self) -> None:
        """Start waking up jobs (needs a running event loop)."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        """Tell whether the scheduler is started and not shut down."""
        return bool(self._scheduler.running)

    def shutdown(self) -> None:
        """Stop firing; nothing is waited for."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def set_job(self, key: str, timing: Timing, start_after: datetime) -> None:
        """Add or replace a job firing after ``start_after``."""
        self._scheduler.add_job(
            _never_called, trigger=LeadTrigger(timing, start_after, self.lead), id=key, name=key,
            executor=EXECUTOR, replace_existing=True, coalesce=False,
            misfire_grace_time=None, max_instances=1_000_000)

    def remove_job(self, key: str) -> None:
        """Remove a job if present."""
        if self._scheduler.get_job(key) is not None:
            self._scheduler.remove_job(key)

    def next_fire(self, key: str) -> datetime | None:
        """Return a job's next nominal time, or None."""
        job = self._scheduler.get_job(key)
        # Before start() jobs are tentative and have no next_run_time attribute yet.
        run_time = getattr(job, "next_run_time", None)
        if run_time is None:
            return None
        return (run_time + self.lead).astimezone(UTC)  # type: ignore[no-any-return]

    def job_keys(self) -> list[str]:
        """Return the keys of all jobs."""
        return [job.id for job in self._scheduler.get_jobs()]

    def wakeup(self) -> None:
        """Make the scheduler re-check its jobs now (after the clock jumped, for instance)."""
        self._scheduler.wakeup()


def _never_called() -> None:  # pragma: no cover - the handoff executor never calls jobs
    raise AssertionError("eventcron jobs are handed off, not run")
