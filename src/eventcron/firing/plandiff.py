"""What changes between two plans: schedules added, removed, changed, and their occurrences.

It compares validated configs (or the schedule summaries the ledger keeps of applied
plans) and counts the events occurrences would send, reading CSV audiences to count their
users per zone; the caller passes the window.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventcron.config import USER_ZONE, Config, Schedule
from eventcron.firing.plan import schedule_jobs
from eventcron.timing import fires_after

Summary = dict[str, dict[str, Any]]  # schedule id -> its fields, as compared


def summarize(cfg: Config) -> Summary:
    """Return each schedule's comparable fields (JSON-able), keyed by id."""
    return {s.id: _fields(s) for s in cfg.schedules}


def _fields(s: Schedule) -> dict[str, Any]:
    audience = s.audience
    if audience.file is not None:
        # Absolute: the same file named from another folder is the same audience.
        users: str = f"file {os.path.abspath(audience.file)}"
    else:
        # Ids, zones and fields: a member's zone moves its occurrences, a field its data.
        members = json.dumps([[m.id, m.timezone, *m.fields] for m in audience.members or ()])
        users = (f"{audience.size} inline,"
                 f" sha256 {hashlib.sha256(members.encode()).hexdigest()[:12]}")
    return {
        "event_type": s.event_type, "kind": s.kind, "timezone": s.timezone,
        "cron": s.cron.source if s.cron else None, "every": s.every,
        "at": s.at.isoformat() if s.at else None, "jitter": s.jitter,
        "starts": s.starts.isoformat() if s.starts else None,
        "ends": s.ends.isoformat() if s.ends else None, "enabled": s.enabled,
        "description": s.description,
        "audience": audience.name if audience.name is not None else "inline",
        "users": users, "data": json.dumps(s.data.parts), "fingerprint": s.fingerprint(),
    }


@dataclass(frozen=True, slots=True)
class PlanChange:
    """Schedules added, removed and changed (with the fields) from one plan to the next."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> field names
    retimed: tuple[str, ...] = ()  # changed in what decides fire times
    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Tell whether nothing changed."""
        return not (self.added or self.removed or self.changed)

    def describe(self) -> str:
        """Say the change in a clause: ``added a; removed b; changed c (cron)``."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        for verb in ("disabled", "enabled", "changed"):
            named = [self.label(sid)[1] for sid in self.changed if self.label(sid)[0] == verb]
            if named:
                parts.append(f"{verb} {', '.join(named)}")
        return "; ".join(parts) or "no schedule changed"

    def label(self, sid: str) -> tuple[str, str]:
        """Name a changed schedule's change: ``("disabled", "b")``, ``("changed", "c (cron)")``.

        Switching a schedule on or off is said as such; other fields that changed with it
        follow in brackets.
        """
        fields = [f for f in self.changed.get(sid, ()) if f != "enabled"]
        verb = ("disabled" if sid in self.disabled else "enabled" if sid in self.enabled
                else "changed")
        return verb, f"{sid} ({', '.join(fields)})" if fields else sid

    def as_json(self) -> dict[str, Any]:
        """Return the change as a JSON object."""
        return {"added": list(self.added), "removed": list(self.removed),
                "changed": {k: list(v) for k, v in self.changed.items()},
                "retimed": list(self.retimed), "enabled": list(self.enabled),
                "disabled": list(self.disabled)}


def compare(old: Mapping[str, Mapping[str, Any]] | None, new: Mapping[str, Mapping[str, Any]],
            ) -> PlanChange:
    """Compare two summaries (``old`` None: the first plan, everything is added)."""
    old = old or {}
    changed: dict[str, tuple[str, ...]] = {}
    for sid in sorted(old.keys() & new.keys()):
        names = tuple(k for k in new[sid] if k != "fingerprint" and old[sid].get(k) != new[sid][k])
        if names:
            changed[sid] = names
    both = old.keys() & new.keys()
    return PlanChange(
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed=changed,
        retimed=tuple(sid for sid in sorted(both)
                      if old[sid].get("fingerprint") != new[sid]["fingerprint"]),
        enabled=tuple(sid for sid in sorted(both)
                      if not old[sid].get("enabled") and new[sid]["enabled"]),
        disabled=tuple(sid for sid in sorted(both)
                       if old[sid].get("enabled") and not new[sid]["enabled"]))


Occurrences = dict[datetime, int]  # nominal time -> events it would send


def occurrences(schedule: Schedule | None, start: datetime, end: datetime) -> Occurrences:
    """Return a schedule's occurrences in ``(start, end]`` with the events each would send.

    A disabled (or absent) schedule sends nothing. With ``timezone: user`` each zone's job
    sends to that zone's users; jobs firing at the same instant add up.
    """
    out: Occurrences = {}
    if schedule is None or not schedule.enabled:
        return out
    jobs = schedule_jobs(schedule)
    if schedule.timezone == USER_ZONE:  # one pass over the audience, not one per zone
        per_zone = Counter(schedule.zone_of(m) for m in schedule.audience.iter_members())
    else:
        per_zone = Counter({job.zone: schedule.audience.size for job in jobs})
    for job in jobs:
        for t in fires_after(job.timing, start, end):
            out[t] = out.get(t, 0) + per_zone[job.zone]
    return out


@dataclass(frozen=True, slots=True)
class Shift:
    """How one schedule's occurrences in the window change."""

    added: tuple[tuple[datetime, int], ...]
    removed: tuple[tuple[datetime, int], ...]


def shift(old: Occurrences, new: Occurrences) -> Shift:
    """Occurrences only in ``new`` (added) and only in ``old`` (removed), with events each.

    An occurrence in both whose event count changed counts as removed and added again.
    """
    added = tuple(sorted((t, n) for t, n in new.items() if old.get(t) != n))
    removed = tuple(sorted((t, n) for t, n in old.items() if new.get(t) != n))
    return Shift(added, removed)
