"""The audit log of plans: what this instance applied at start and on reload, and refused.

Each entry goes to the ledger (``eventcron history --changes`` lists them) and an applied
reload is also said in one log line. Paths are recorded absolute: ``diff`` resolves the
files a recorded plan names from wherever it runs. A ledger that refuses the write costs
a warning, never the plan: the audit log follows what runs, it does not decide it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from eventcron.clock import Clock, to_ms
from eventcron.config import Config
from eventcron.firing.plandiff import PlanChange, Summary, compare, summarize
from eventcron.ledger import TRANSIENT, LedgerThread, PlanRecord, password_of
from eventcron.problems import first_line
from eventcron.text import count

log = logging.getLogger("eventcron")


class Audit:
    """Records the plans one instance runs.

    At start the record is written before the instance is ready. On reload it is written in
    the background, so that a ledger slow to take it (locked, or gone for a while) delays
    neither the reload nor its log line; :meth:`close` waits a moment for what is left.
    """

    def __init__(self, db: LedgerThread, clock: Clock, instance: str) -> None:
        self.db = db
        self.clock = clock
        self.instance = instance
        self.cwd = Path.cwd()  # relative paths are relative to it (the process never moves)
        self._writing: set[asyncio.Task[None]] = set()

    async def started(self, cfg: Config, cancelled: int, *, suppressed: int = 0) -> PlanChange:
        """Record the plan this instance starts with, against the last one any instance ran.

        ``cancelled``: pending rows of schedules that left the plan while it was stopped;
        ``suppressed``: pending rows of users on the suppression list.
        """
        try:
            last = await self.db.call(self.db.ledger.last_applied_plan)
        except TRANSIENT as e:
            log.warning("cannot read the last applied plan from the ledger: %s", first_line(e))
            last = None
        previous = last.schedules if last is not None else None
        change, record = self._applied(cfg, previous, cancelled=cancelled,
                                       suppressed=suppressed)
        await self._write(record)
        return change

    def reloaded(self, old: Config, new: Config, cancelled: int, *,
                 suppressed: int = 0) -> PlanChange:
        """Record a reload this instance applied, against the plan it ran until now."""
        change, record = self._applied(new, summarize(old), cancelled=cancelled,
                                       suppressed=suppressed)
        self._in_background(record)
        return change

    def refused(self, path: Path, sha256: str, problems: int) -> None:
        """Record a reload refused for ``problems`` problems in the file."""
        self._in_background(PlanRecord(to_ms(self.clock.now()), self.instance,
                                       str(self.cwd / path), sha256, "refused", problems))

    async def close(self, within: float) -> None:
        """Wait up to ``within`` seconds for records still being written, then drop them."""
        if self._writing:
            _, late = await asyncio.wait(self._writing, timeout=within)
            for task in late:
                task.cancel()
            if late:
                log.warning("%s not written to the ledger's audit log at shutdown",
                            count(len(late), "plan record"))
            await asyncio.gather(*late, return_exceptions=True)

    def _applied(self, cfg: Config, previous: Summary | None, *, cancelled: int,
                 suppressed: int) -> tuple[PlanChange, PlanRecord]:
        summary = summarize(cfg)
        change = compare(previous, summary)
        # "suppressed" only when some were: older entries, and plans without opt-outs, lack it.
        opted_out = {"suppressed": suppressed} if suppressed else {}
        return change, PlanRecord(
            to_ms(self.clock.now()), self.instance, str(self.cwd / cfg.path), cfg.sha256,
            "applied", content=_hide_password(cfg.source, cfg.database), schedules=summary,
            change={**change.as_json(), "cancelled": cancelled, **opted_out})

    def _in_background(self, record: PlanRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._write(record))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, record: PlanRecord) -> None:
        try:
            await self.db.call(self.db.ledger.record_plan, record)
        except TRANSIENT as e:
            log.warning("cannot record the plan in the ledger's audit log: %s", first_line(e))


def _hide_password(text: str, database: str) -> str:
    """Return the file's text without the ledger's password, should the file spell it."""
    password = password_of(database)
    return text.replace(password, "***") if password else text
