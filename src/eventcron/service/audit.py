"""The audit log of plans: what this instance applied at start and on reload, and refused.

Each entry goes to the ledger (``eventcron history --changes`` lists them) and an applied
reload is also said in one log line. Paths are recorded absolute: ``diff`` resolves the
files a recorded plan names from wherever it runs. A ledger that refuses the write costs
a warning, never the plan: the audit log follows what runs, it does not decide it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from eventcron.clock import Clock, to_ms
from eventcron.config import Config
from eventcron.firing.plandiff import PlanChange, Summary, compare, summarize
from eventcron.ledger import TRANSIENT, LedgerThread, PlanRecord
from eventcron.problems import first_line

log = logging.getLogger("eventcron")


class Audit:
    """Records the plans one instance runs."""

    def __init__(self, db: LedgerThread, clock: Clock, instance: str) -> None:
        self.db = db
        self.clock = clock
        self.instance = instance
        self.cwd = Path.cwd()  # relative paths are relative to it (the process never moves)

    async def started(self, cfg: Config) -> PlanChange:
        """Record the plan this instance starts with, against the last one any instance ran."""
        try:
            last = await self.db.call(self.db.ledger.last_applied_plan)
        except TRANSIENT as e:
            log.warning("cannot read the last applied plan from the ledger: %s", first_line(e))
            last = None
        previous = last.schedules if last is not None else None
        return await self._applied(cfg, previous, cancelled=0)

    async def reloaded(self, old: Config, new: Config, cancelled: int) -> PlanChange:
        """Record a reload this instance applied, against the plan it ran until now."""
        return await self._applied(new, summarize(old), cancelled=cancelled)

    async def refused(self, path: Path, sha256: str, problems: int) -> None:
        """Record a reload refused for ``problems`` problems in the file."""
        await self._write(PlanRecord(to_ms(self.clock.now()), self.instance,
                                     str(self.cwd / path), sha256, "refused", problems))

    async def _applied(self, cfg: Config, previous: Summary | None, *,
                       cancelled: int) -> PlanChange:
        summary = summarize(cfg)
        change = compare(previous, summary)
        await self._write(PlanRecord(
            to_ms(self.clock.now()), self.instance, str(self.cwd / cfg.path), cfg.sha256,
            "applied", content=cfg.source, schedules=summary,
            change={**change.as_json(), "cancelled": cancelled}))
        return change

    async def _write(self, record: PlanRecord) -> None:
        try:
            await self.db.call(self.db.ledger.record_plan, record)
        except TRANSIENT as e:
            log.warning("cannot record the plan in the ledger's audit log: %s", first_line(e))
