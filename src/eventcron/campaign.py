"""The campaign rules: quiet hours, skip dates and holidays, frequency caps, opt-outs.

The one place that decides what the rules of a :class:`~eventcron.config.Config` make of
an occurrence for a recipient. Pure: it reads no clock and no file (the opt-out list was
read with the config) and writes nothing. Firing asks it for each row it enqueues, the
dispatcher before each attempt, ``eventcron next`` and ``eventcron diff`` for their
previews, so what a preview says is what the daemon does.

Every time is decided in the recipient's zone: the user's own ``timezone`` where the
audience gives one, else the schedule's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from eventcron.clock import rfc3339
from eventcron.config import Config, Schedule
from eventcron.config.audience import Member
from eventcron.config.model import DEFAULT_ZONE, USER_ZONE, Cap, QuietHours
from eventcron.config.units import format_duration
from eventcron.states import QUIET_HOLD
from eventcron.timing.holidays import check_region, holiday
from eventcron.timing.jitter import jitter_delay
from eventcron.timing.quiet import quiet_end, quiet_spans
from eventcron.timing.walltime import as_utc
from eventcron.timing.windows import Window, window_of

OPTED_OUT: Final = "opted out"  # the reason of a row suppressed by the suppression file

Status = Literal["pending", "suppressed", "expired"]


class CapWindow(NamedTuple):
    """The cap window an event counts in: one hour, day or week of the recipient's zone."""

    cap: str  # as written: "1/day"
    limit: int
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    label: str  # "2026-12-07 (Europe/Berlin)"


class Verdict(NamedTuple):
    """What the rules make of one occurrence for one recipient."""

    zone: str  # the recipient's zone
    send_at: datetime  # the first attempt: nominal plus jitter, moved past quiet hours
    status: Status
    reason: str | None  # why it is suppressed or expired; None while pending
    cap: CapWindow | None  # where it counts against limits.per_user; None: exempt, no cap


Judge = Callable[[Member], Verdict]


def expired_by_quiet_hours(quiet: QuietHours, zone: str) -> str:
    """Say why a row ends expired: its quiet window lasts past its expiry."""
    return (f"quiet hours {quiet.describe()} ({zone}) last past its expiry"
            " (delivery.expires_after)")


def held_by_quiet_hours(quiet: QuietHours, zone: str, until: datetime) -> str:
    """Say why a claimed row waits without spending an attempt: its quiet window."""
    return f"{QUIET_HOLD} {quiet.describe()} ({zone}) until {rfc3339(until)}"


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class _InZone:
    """What one occurrence of a job is for the recipients in one zone (built once per zone)."""

    __slots__ = ("alike", "cap_zone", "held", "name", "regions", "skip", "spans", "window",
                 "windows")

    def __init__(self, name: str, skip: str | None,
                 spans: list[tuple[datetime, datetime]], cap_zone: str) -> None:
        self.name = name
        self.cap_zone = cap_zone  # where its users' cap windows are counted
        self.skip = skip  # the date or fixed-region verdict, for every recipient here
        self.spans = spans  # quiet windows met by [nominal, nominal + jitter]
        self.regions: dict[str, str | None] = {}  # user.<column> region -> holiday reason
        self.held: dict[datetime, Verdict] = {}  # quiet window end -> verdict of those held
        self.window: CapWindow | None = None  # the cap window found last
        self.windows: list[CapWindow] = []  # every cap window found
        # The verdict of every user here who did not opt out, when none depends on the
        # user (no jitter, no user.<column> holidays); None until the first is judged.
        self.alike: Verdict | None = None

    def cap_window(self, cap: Cap | None, at: datetime) -> CapWindow | None:
        """Return the cap window of ``at`` in this zone; the users of a fire share a few."""
        if cap is None:
            return None
        for window in self.windows:
            if window.start <= at < window.end:
                self.window = window
                return window
        found: Window = window_of(cap.unit, _zone(self.cap_zone), at)
        self.window = CapWindow(cap.describe(), cap.count, found.start, found.end, found.label)
        self.windows.append(self.window)
        return self.window

    def hold(self, until: datetime, expires_at: datetime, quiet: QuietHours | None,
             cap: Cap | None) -> Verdict:
        """Return (and remember) the verdict of users held by quiet hours until ``until``."""
        if until >= expires_at:
            assert quiet is not None
            found = Verdict(self.name, until, "expired",
                            expired_by_quiet_hours(quiet, self.name), None)
        else:
            found = Verdict(self.name, until, "pending", None, self.cap_window(cap, until))
        self.held[until] = found
        return found


class Rules:
    """The campaign rules of one config; built once per plan, shared by every stage."""

    def __init__(self, cfg: Config) -> None:
        self._schedules = {s.id: s for s in cfg.schedules}
        self._opted_out = cfg.suppress.users if cfg.suppress is not None else frozenset()
        self._cap = cfg.per_user
        self._active = bool(self._opted_out) or any(
            s.quiet_hours is not None or s.skip or (self._cap is not None and not s.exempt)
            for s in cfg.schedules)

    @property
    def active(self) -> bool:
        """Tell whether any rule applies at all (the fast path of a plain schedule file)."""
        return self._active

    def recipient_zone(self, schedule: Schedule, member: Member) -> str:
        """Return the zone rules are decided in for ``member``: their own, or the schedule's."""
        return member.timezone or schedule.zone_of(member)

    def occurrence_skip(self, schedule: Schedule, zone: str, nominal: datetime) -> str | None:
        """Return why the occurrence of job (``schedule``, ``zone``) is skipped for everyone.

        ``holiday: Christmas Day (DE)`` or ``skip date 2026-12-24``; None when it is not,
        or when only some recipients skip it (their rows say so one by one).
        """
        skip = schedule.skip
        if not (skip.dates or skip.holidays):
            return None  # no skip, or only user.<column> holidays: decided per user
        nominal = as_utc(nominal, "nominal")
        found: str | None = None
        for i, name in enumerate(self._job_zones(schedule, zone)):
            reason = _date_skip(schedule, _zone(name), nominal)
            if reason is None or (i and reason != found):
                return None
            found = reason
        return found

    def judge(self, schedule: Schedule, zone: str, nominal: datetime,
              expires_at: datetime) -> Judge:
        """Return the verdict function for the recipients of one occurrence of a job.

        Work that depends only on the recipient's zone is done once per zone, so a fire
        of a million users pays a dictionary lookup per user for it.
        """
        nominal = as_utc(nominal, "nominal")
        expires_at = as_utc(expires_at, "expires_at")
        sid = schedule.id
        jitter = timedelta(seconds=schedule.jitter)
        jittered = bool(schedule.jitter)
        quiet = schedule.quiet_hours
        cap = None if schedule.exempt else self._cap
        opted_out = self._opted_out
        region_at = schedule.region_index()

        # Keyed by the user's own zone, None for users without one: those are judged in
        # the job's zone but capped in UTC (see cap_zone).
        zones: dict[str | None, _InZone] = {}

        def in_zone(own: str | None) -> _InZone:
            name = own or zone
            tz = _zone(name)
            spans = (quiet_spans(quiet.start, quiet.end, tz, nominal, nominal + jitter)
                     if quiet is not None else [])
            state = zones[own] = _InZone(name, _date_skip(schedule, tz, nominal), spans,
                                         cap_zone(own))
            return state

        def verdict(member: Member) -> Verdict:
            own = member.timezone
            state = zones.get(own) or in_zone(own)
            name = state.name
            uid = member.id
            out = uid in opted_out
            if state.alike is not None and not out:
                return state.alike
            send_at = nominal + jitter_delay(sid, uid, nominal, jitter) if jittered else nominal
            held = False
            for start, end in state.spans:
                if start <= send_at < end:
                    send_at, held = end, True
                    break
            if out:
                return Verdict(name, send_at, "suppressed", OPTED_OUT, None)
            reason = state.skip
            if reason is None and region_at >= 0:
                region = member.fields[region_at]
                if region in state.regions:
                    reason = state.regions[region]
                elif region:
                    reason = _region_skip(state, region, nominal)
            if reason is not None:
                found = Verdict(name, send_at, "suppressed", reason, None)
            elif held:
                # Everyone held in one window is sent at its end: one verdict for them all.
                found = state.held.get(send_at) or state.hold(send_at, expires_at, quiet, cap)
            else:
                window = state.window
                if window is None or not window.start <= send_at < window.end:
                    window = state.cap_window(cap, send_at)
                found = Verdict(name, send_at, "pending", None, window)
            if not jittered and region_at < 0:
                state.alike = found  # no jitter, no user column: the zone's users are alike
            return found

        return verdict

    def quiet_until(self, schedule_id: str, zone: str | None, at: datetime) -> datetime | None:
        """Return the end of the quiet window ``at`` falls in, for a row of ``schedule_id``.

        ``zone`` is the row's recipient zone (None: the schedule's own; UTC for a
        ``timezone: user`` schedule, whose rows from before zones were kept name none).
        None when ``at`` is outside the schedule's window, the schedule has none, or it is
        not in the plan.
        """
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.quiet_hours is None:
            return None
        if zone is None:
            zone = DEFAULT_ZONE if schedule.timezone == USER_ZONE else schedule.timezone
        quiet = schedule.quiet_hours
        return quiet_end(quiet.start, quiet.end, _zone(zone), at)

    def quiet_hours(self, schedule_id: str) -> QuietHours | None:
        """Return the quiet window in force for a schedule, or None (none, or not in the plan)."""
        schedule = self._schedules.get(schedule_id)
        return schedule.quiet_hours if schedule is not None else None

    def opted_out(self, app_user_id: str) -> bool:
        """Tell whether the user is on the suppression list."""
        return app_user_id in self._opted_out

    @staticmethod
    def _job_zones(schedule: Schedule, zone: str) -> list[str]:
        """Return the recipient zones of a job: every user's own, or the job's for those without."""
        if schedule.timezone == USER_ZONE:
            return [zone]  # the job serves exactly the users whose own zone it is
        return sorted({tz or zone for tz in schedule.audience.timezones}) or [zone]


def cap_zone(own: str | None) -> str:
    """Return the zone a user's cap windows are counted in: their own, else UTC.

    Never the schedule's: a user without a zone, served by schedules in Berlin and in New
    York, must have one "day" for ``per_user: 1/day``, or the cap would hold per schedule.
    """
    return own or DEFAULT_ZONE


def _date_skip(schedule: Schedule, tz: ZoneInfo, nominal: datetime) -> str | None:
    """Return the skip-date or fixed-region holiday reason of the occurrence's local date."""
    skip = schedule.skip
    if not (skip.dates or skip.holidays):
        return None
    day = nominal.astimezone(tz).date()
    if day in skip.dates:
        return f"skip date {day.isoformat()}"
    if skip.holidays is not None:
        name = holiday(skip.holidays, day)
        if name is not None:
            return f"holiday: {name} ({skip.holidays})"
    return None


def _region_skip(state: _InZone, value: str, nominal: datetime) -> str | None:
    """Return (and remember for the zone) the holiday reason of a user.<column> region."""
    region = value.strip()
    reason = None
    # A value the validation did not see (the file changed since) is no region: the
    # reload that follows reports it; until then the user has no holidays.
    if region and check_region(region) is None:
        day = nominal.astimezone(_zone(state.name)).date()
        name = holiday(region, day)
        if name is not None:
            reason = f"holiday: {name} ({region})"
    state.regions[value] = reason
    return reason


def warnings(cfg: Config) -> list[str]:
    """Return ``file:line: warning: ...`` for rules that defeat themselves.

    A quiet window longer than ``delivery.expires_after``: events due at its start would
    expire instead of waiting.
    """
    out = []
    expires_after = cfg.delivery.expires_after
    for s in cfg.schedules:
        quiet = s.quiet_hours
        if quiet is None or quiet.length().total_seconds() <= expires_after:
            continue
        out.append(f"{cfg.path}:{s.line}: warning: schedule {s.id!r}: its quiet hours"
                   f" ({quiet.describe()}, {format_duration(quiet.length().total_seconds())})"
                   " last longer than delivery.expires_after"
                   f" ({format_duration(expires_after)}): events due when they begin would"
                   " expire instead of waiting; raise expires_after or shorten the window.")
    return out
