"""The ledger thread: ledger calls run one at a time off the event loop.

It touches the ledger only through the :class:`Ledger` it is given, and paces the
daemon's prune in steps so other calls get through in between.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from eventcron.clock import monotonic
from eventcron.ledger.records import PRUNE_START, PruneAt
from eventcron.ledger.retention import PRUNE_BATCH, PRUNE_BATCHES, PRUNE_STEP_SECONDS

if TYPE_CHECKING:
    from eventcron.ledger.database import Ledger

_T = TypeVar("_T")


class LedgerThread:
    """Runs ledger calls on one dedicated thread, so the event loop never blocks on disk.

    One thread also serializes this process's writes, which SQLite wants anyway.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn(*args, **kwargs)`` on the ledger thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def prune(self, before: int, refire_horizon: int, *, batch: int = PRUNE_BATCH,
                    step_seconds: float | None = PRUNE_STEP_SECONDS) -> int:
        """Run :meth:`Ledger.prune` one step per call; return the delivery rows deleted.

        The thread takes calls in turn, so claims, records and health probes queued during
        a step run before the next one: none waits for more than a step. Steps start at
        ``batch`` rows, then double or halve (within PRUNE_BATCHES) to take about
        ``step_seconds``, whatever the disk and the rows' layout; None keeps ``batch``.
        """

        def step(at: PruneAt, size: int) -> tuple[int, PruneAt | None, float]:
            began = monotonic()
            n, following = self.ledger.prune_step(before, refire_horizon, at, batch=size)
            return n, following, monotonic() - began

        total = 0
        at: PruneAt | None = PRUNE_START
        while at is not None:
            n, at, took = await self.call(step, at, batch)
            total += n
            if step_seconds is not None:
                least, most = PRUNE_BATCHES
                if took < step_seconds / 2:
                    batch = min(most, batch * 2)
                elif took > step_seconds:
                    batch = max(least, batch // 2)
        return total

    def close(self) -> None:
        """Finish queued calls, stop the thread and close the ledger."""
        self._executor.shutdown(wait=True)
        self.ledger.close()
