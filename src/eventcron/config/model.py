"""The validated schedule file: frozen objects, each default written here once.

The dataclass field defaults are the defaults of the file: the reader falls back on them
for keys a file leaves out, and :mod:`eventcron.config.schema` prints them as the
``default`` of each key. The bounds a value may take sit beside them for the same reason.
Holds data and the fire-time arithmetic of a schedule; reads no file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, Literal, get_args

from eventcron.config.audience import Audience, Member
from eventcron.config.template import DataTemplate
from eventcron.timing import (
    UTC,
    AtTiming,
    CronExpr,
    CronTiming,
    EveryTiming,
    Timing,
    resolve_wall,
)

CatchUpMode = Literal["latest", "all", "none"]
Kind = Literal["cron", "every", "at"]
CapUnit = Literal["h", "day", "week"]

CATCH_UP_MODES: Final[tuple[CatchUpMode, ...]] = get_args(CatchUpMode)
DEFAULT_ZONE: Final = "UTC"  # a schedule's zone when it names none
USER_ZONE: Final = "user"  # `timezone: user`: each user's own zone
MAX_CONCURRENCY: Final = 10_000  # requests in flight: the most endpoint.concurrency allows
MAX_ATTEMPTS: Final = 1_000  # attempts per event: the most delivery.max_attempts allows
MIN_EVERY: Final = 1.0  # seconds: the shortest `every` interval
MAX_CAP_COUNT: Final = 1_000  # events per user and window: the most limits.per_user allows


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where the API token comes from: an environment variable, a file or a credential."""

    kind: Literal["env", "file", "credential"]
    value: str  # variable name, absolute path, or credential name

    def describe(self) -> str:
        """Say where the token is read from, for messages (never the token itself)."""
        if self.kind == "env":
            return f"the environment variable {self.value}"
        if self.kind == "file":
            return f"the file {self.value}"
        return f"the systemd credential {self.value!r}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The receiving API and how hard to push it."""

    url: str = "https://api.init.ai/api/v1/webhook/event"
    token: TokenSource = TokenSource("env", "EVENTCRON_TOKEN")
    timeout: float = 10.0  # seconds per request, connect to last byte
    concurrency: int = 32  # requests in flight
    rate_limit: float | None = None  # requests per second; None for no limit
    ca_bundle: str | None = None  # absolute path of a PEM bundle; None: the system's CAs
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window of the recipient's local wall time in which nothing is sent.

    ``start`` (the file's ``from``) may be later than ``end`` (``to``): the window then
    crosses midnight. They are never equal (the reader refuses an empty window).
    """

    start: time
    end: time

    def describe(self) -> str:
        """Say the window as the file writes it: ``21:00-08:00``."""
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def length(self) -> timedelta:
        """Return how long the window lasts on a day without a DST change."""
        minutes = (self.end.hour * 60 + self.end.minute
                   - self.start.hour * 60 - self.start.minute) % (24 * 60)
        return timedelta(minutes=minutes)


@dataclass(frozen=True, slots=True)
class Cap:
    """A frequency cap: at most ``count`` events per user per ``unit`` (recipient's zone)."""

    count: int
    unit: CapUnit

    def describe(self) -> str:
        """Say the cap as the file writes it: ``1/day``."""
        return f"{self.count}/{self.unit}"


@dataclass(frozen=True, slots=True)
class Skip:
    """Local dates on which a schedule sends nothing to a recipient."""

    dates: frozenset[date] = frozenset()
    holidays: str | None = None  # a region: ISO 3166 country, optionally -subdivision (DE-BY)
    holidays_column: str | None = None  # or the audience column naming each user's region

    def __bool__(self) -> bool:
        return bool(self.dates or self.holidays or self.holidays_column)


@dataclass(frozen=True, slots=True)
class Suppression:
    """The opt-out list: users who are never sent anything."""

    file: Path  # absolute
    users: frozenset[str] = frozenset()
    stamp: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) when read


@dataclass(frozen=True, slots=True)
class Delivery:
    """Retry, expiry and catch-up policy."""

    max_attempts: int = 10  # attempts per event
    initial_backoff: float = 30.0  # seconds
    max_backoff: float = 3600.0  # seconds
    expires_after: float = 6 * 3600.0  # seconds after the nominal time
    catch_up: float = 3600.0  # seconds before start-up
    catch_up_mode: CatchUpMode = "latest"
    retention: float = 30 * 86400.0  # seconds final rows are kept after their last change
    claim_lease: float = 60.0  # seconds a claim outlives a silent instance
    quiet_hours: QuietHours | None = None  # every schedule's default window; None: no window


@dataclass(frozen=True, slots=True)
class Schedule:
    """One validated schedule: when, to whom, what."""

    id: str
    event_type: str
    kind: Kind
    timezone: str  # an IANA name, or USER_ZONE; DEFAULT_ZONE when the file names none
    audience: Audience
    data: DataTemplate
    cron: CronExpr | None = None
    every: float | None = None  # seconds
    at: datetime | None = None  # naive: wall time in the zone; aware: an instant
    jitter: float = 0.0  # seconds
    starts: datetime | None = None  # naive or aware, as `at`
    ends: datetime | None = None
    enabled: bool = True
    description: str = ""
    line: int = 0  # where the schedule starts in the file
    # Campaign rules. quiet_hours is the window in force: the schedule's own, or
    # delivery.quiet_hours when it names none (``quiet_hours: none`` gives None).
    quiet_hours: QuietHours | None = None
    skip: Skip = Skip()
    exempt: bool = False  # ``limits: exempt``: neither counted nor capped

    def zones(self) -> tuple[str, ...]:
        """Return the zones this schedule fires in: one job runs per zone."""
        if self.timezone != USER_ZONE:
            return (self.timezone,)
        return tuple(sorted({z or DEFAULT_ZONE for z in self.audience.timezones})) or (
            DEFAULT_ZONE,
        )

    def zone_of(self, member: Member) -> str:
        """Return the zone this schedule serves ``member`` in (the one path for run and next)."""
        if self.timezone != USER_ZONE:
            return self.timezone
        return member.timezone or DEFAULT_ZONE

    def region_index(self) -> int:
        """Return where a member's fields hold the ``skip.holidays: user.<column>`` region.

        -1 when the schedule takes no region from its users (or its audience lacks the
        column, which validation reports).
        """
        column, columns = self.skip.holidays_column, self.audience.columns
        return columns.index(column) if column is not None and column in columns else -1

    def members(self, zone: str) -> Iterator[Member]:
        """Yield the audience members the job for ``zone`` serves."""
        if self.timezone != USER_ZONE:
            return self.audience.iter_members()
        return (m for m in self.audience.iter_members() if self.zone_of(m) == zone)

    def timing(self, zone: str) -> Timing:
        """Return the fire-time calculator of this schedule in one of its zones."""
        tz = zoneinfo.ZoneInfo(zone)
        starts = _instant(self.starts, tz)
        ends = _instant(self.ends, tz)
        if self.kind == "cron":
            assert self.cron is not None
            return CronTiming(self.cron, tz, starts, ends)
        if self.kind == "every":
            assert self.every is not None
            anchor = starts or datetime(1970, 1, 1, tzinfo=UTC)
            return EveryTiming(timedelta(seconds=self.every), anchor, starts, ends)
        assert self.at is not None
        instant = _instant(self.at, tz)
        assert instant is not None
        return AtTiming(instant)

    def fingerprint(self) -> str:
        """Hash what decides fire times, so an edited schedule can restart from now."""
        parts = [self.kind, self.cron.source if self.cron else "", repr(self.every),
                 _iso(self.at), self.timezone, _iso(self.starts), _iso(self.ends)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated schedule file."""

    path: Path
    database: str  # SQLAlchemy URL, relative SQLite paths already resolved
    endpoint: Endpoint
    delivery: Delivery
    audiences: dict[str, Audience]
    schedules: tuple[Schedule, ...]
    metrics_listen: tuple[str, int] | None = None  # (host, port); None: no metrics
    suppress: Suppression | None = None  # the opt-out list; None: nobody opted out
    per_user: Cap | None = None  # ``limits.per_user``; None: no cap
    sha256: str = ""  # of the file's bytes: which plan an instance runs
    source: str = field(default="", repr=False)  # the file as loaded, for the audit log

    def schedule(self, schedule_id: str) -> Schedule | None:
        """Return the schedule with this id, or None."""
        for s in self.schedules:
            if s.id == schedule_id:
                return s
        return None


def field_default(cls: type[Any], name: str) -> Any:
    """Return the default of field ``name`` of a model class (for classes with required fields)."""
    for f in dataclasses.fields(cls):
        if f.name == name and f.default is not dataclasses.MISSING:
            return f.default
    raise LookupError(f"{cls.__name__}.{name} has no default")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _instant(value: datetime | None, tz: zoneinfo.ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return resolve_wall(value, tz)
