"""What changes between two plans: schedules added, removed, changed, and their occurrences.

It compares validated configs (or the schedule summaries the ledger keeps of applied
plans) and counts the events occurrences would send, reading CSV audiences to count their
users per zone (and, under campaign rules, per region and opt-out); the caller passes the
window.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventcron.config import USER_ZONE, Config, Schedule
from eventcron.config.audience import Member
from eventcron.firing.plan import Job, schedule_jobs
from eventcron.timing import fires_after

if TYPE_CHECKING:
    from eventcron.campaign import Rules

Summary = dict[str, dict[str, Any]]  # schedule id -> its fields, as compared


def summarize(cfg: Config) -> Summary:
    """Return each schedule's comparable fields (JSON-able), keyed by id."""
    return {s.id: _fields(s, cfg) for s in cfg.schedules}


def _fields(s: Schedule, cfg: Config) -> dict[str, Any]:
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
        "users": users, "data": json.dumps(s.data.parts), **_campaign_fields(s, cfg),
        "fingerprint": s.fingerprint(),
    }


def _campaign_fields(s: Schedule, cfg: Config) -> dict[str, str | None]:
    """Return the campaign rules in force for ``s``; None where none applies.

    None, not a key left out, so that summaries of plans written before these keys
    existed compare equal to a file without them.
    """
    skip = None
    if s.skip:
        said = [f"dates {','.join(sorted(d.isoformat() for d in s.skip.dates))}"
                if s.skip.dates else "",
                f"holidays {s.skip.holidays}" if s.skip.holidays else "",
                f"holidays user.{s.skip.holidays_column}" if s.skip.holidays_column else ""]
        skip = "; ".join(part for part in said if part)
    # The file-wide cap and opt-out list change what every schedule they cover sends.
    limits = "exempt" if s.exempt else cfg.per_user.describe() if cfg.per_user else None
    return {"quiet_hours": s.quiet_hours.describe() if s.quiet_hours else None,
            "skip": skip, "limits": limits,
            "suppress": f"file {os.path.abspath(cfg.suppress.file)}" if cfg.suppress else None}


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


def occurrences(schedule: Schedule | None, start: datetime, end: datetime,
                rules: Rules | None = None,
                expires_after: timedelta = timedelta(0)) -> Occurrences:
    """Return a schedule's occurrences in ``(start, end]`` with the events each would send.

    A disabled (or absent) schedule sends nothing. With ``timezone: user`` each zone's job
    sends to that zone's users; jobs firing at the same instant add up. With ``rules``
    (of the schedule's config; ``expires_after`` its ``delivery.expires_after``), an
    occurrence skipped for everyone is left out, and users it skips (their holidays or
    local date), who opted out, or whose event quiet hours would hold past its expiry
    are not counted. A cap is decided only as events are sent, so it is not foreseen.
    """
    out: Occurrences = {}
    if schedule is None or not schedule.enabled:
        return out
    jobs = schedule_jobs(schedule)
    if rules is not None and rules.active:
        groups = _groups(schedule, rules)
        for job in jobs:
            for t, n in _judged(schedule, job, fires_after(job.timing, start, end),
                                rules=rules, expires_after=expires_after, groups=groups):
                out[t] = out.get(t, 0) + n
        return out
    if schedule.timezone == USER_ZONE:  # one pass over the audience, not one per zone
        per_zone = Counter(schedule.zone_of(m) for m in schedule.audience.iter_members())
    else:
        per_zone = Counter({job.zone: schedule.audience.size for job in jobs})
    for job in jobs:
        for t in fires_after(job.timing, start, end):
            out[t] = out.get(t, 0) + per_zone[job.zone]
    return out


Groups = dict[str, list[tuple[Member, int]]]  # job zone -> (a member of a group, its size)


def _groups(schedule: Schedule, rules: Rules) -> Groups:
    """Count the audience in one pass by what the rules decide on: zone, region, opt-out.

    Members alike in these get one verdict, so each group is judged once per occurrence
    by its first member, not each of a million users. (With jitter, whether quiet hours
    outlast the expiry is judged at that member's send time.)
    """
    at = schedule.region_index()
    opted_out = rules.opted_out
    # By the member's own zone as written: the job's and the recipient's zone follow from
    # it alone, and are asked once per group below rather than once per member.
    found: dict[tuple[str | None, str | None, bool], list[Any]] = {}
    for m in schedule.audience.iter_members():
        key = (m.timezone, m.fields[at] if at >= 0 else None, opted_out(m.id))
        group = found.get(key)
        if group is None:
            found[key] = [m, 1]
        else:
            group[1] += 1
    groups: Groups = {}
    for member, size in found.values():
        groups.setdefault(schedule.zone_of(member), []).append((member, size))
    return groups


def _judged(schedule: Schedule, job: Job, times: Iterator[datetime], *, rules: Rules,
            expires_after: timedelta, groups: Groups) -> Iterator[tuple[datetime, int]]:
    """Yield the job's occurrences not skipped for everyone, with the events each sends."""
    members = groups.get(job.zone, [])
    everyone = sum(size for _, size in members)
    # Only skips, opt-outs and quiet hours (through the expiry) change who an occurrence
    # sends to; without them every member counts and no verdict is needed.
    judge = (bool(schedule.skip) or schedule.quiet_hours is not None
             or any(rules.opted_out(m.id) for m, _ in members))
    for t in times:
        if schedule.skip and rules.occurrence_skip(schedule, job.zone, t) is not None:
            continue  # recorded as skipped: no rows, no events
        if not judge:
            yield t, everyone
            continue
        verdict = rules.judge(schedule, job.zone, t, t + expires_after)
        yield t, sum(size for m, size in members if verdict(m).status == "pending")


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
