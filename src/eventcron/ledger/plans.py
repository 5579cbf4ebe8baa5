"""The audit log of plans: each plan an instance applied, and each reload it refused.

The part of :class:`Ledger` behind ``history --changes`` and ``diff``. It reads and writes
``plans`` only. An applied plan keeps the file as applied and a summary of its schedules,
so the next plan (on any instance) can say what changed, and ``diff`` what an edit will do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, insert, select

from eventcron.ledger.base import LedgerBase
from eventcron.ledger.schema import plans

PlanOutcome = Literal["applied", "refused"]


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """One plan applied or refused by an instance."""

    at: int  # ms
    instance: str
    file: str
    sha256: str
    outcome: PlanOutcome
    problems: int = 0
    content: str | None = None  # applied only
    schedules: dict[str, Any] | None = None  # applied only: the schedule summary
    change: dict[str, Any] | None = None  # applied only: against the previous plan


class Plans(LedgerBase):
    """The plans instances applied or refused."""

    def record_plan(self, record: PlanRecord) -> None:
        """Append a plan to the audit log."""
        with self._tx() as conn:
            conn.execute(insert(plans).values(
                at=record.at, instance=record.instance, file=record.file,
                sha256=record.sha256, outcome=record.outcome, problems=record.problems,
                content=record.content,
                schedules=None if record.schedules is None else json.dumps(record.schedules),
                change=None if record.change is None else json.dumps(record.change)))

    def last_applied_plan(self) -> PlanRecord | None:
        """Return the plan applied most recently (by any instance), or None."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(plans).where(plans.c.outcome == "applied")
                               .order_by(plans.c.at.desc(), plans.c.id.desc())
                               .limit(1)).first()
        return None if row is None else _record(row)

    def prune_plans(self, before: int) -> int:
        """Delete plans recorded before ``before`` (ms), except the one applied last.

        That one stays whatever its age: it is what the next start and ``diff`` compare with.
        """
        with self._tx() as conn:
            keep = conn.execute(select(plans.c.id).where(plans.c.outcome == "applied")
                                .order_by(plans.c.at.desc(), plans.c.id.desc())
                                .limit(1)).scalar()
            stmt = delete(plans).where(plans.c.at < before)
            if keep is not None:
                stmt = stmt.where(plans.c.id != keep)
            return int(conn.execute(stmt).rowcount or 0)

    def plan_log(self, *, since: int | None = None,
                 limit: int | None = 50) -> list[PlanRecord]:
        """Return plans applied or refused, newest first (without their file contents).

        ``limit`` None returns them all.
        """
        stmt = select(plans.c.at, plans.c.instance, plans.c.file, plans.c.sha256,
                      plans.c.outcome, plans.c.problems, plans.c.change)
        if since is not None:
            stmt = stmt.where(plans.c.at >= since)
        with self._tx(write=False) as conn:
            stmt = stmt.order_by(plans.c.at.desc(), plans.c.id.desc())
            rows = conn.execute(stmt if limit is None else stmt.limit(limit)).all()
        return [PlanRecord(int(r.at), r.instance, r.file, r.sha256, r.outcome, int(r.problems),
                           change=json.loads(r.change) if r.change else None) for r in rows]


def _record(row: Any) -> PlanRecord:
    return PlanRecord(int(row.at), row.instance, row.file, row.sha256, row.outcome,
                      int(row.problems), row.content,
                      json.loads(row.schedules) if row.schedules else None,
                      json.loads(row.change) if row.change else None)
