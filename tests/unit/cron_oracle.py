"""Brute-force reference for cron fire times, independent of eventcron.timing.

Reads crontab(5) with its own naive parser and replays cronie's main loop minute by
minute over real (UTC) time, so DST behaviour comes from the same rules cron(8) uses
rather than from the engine under test. Slow by design; inputs are assumed valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31,
                 11: 30, 12: 31}
NAIVE_EPOCH = datetime(1970, 1, 1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Job:
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]  # 0-6, Sunday 0
    dom_star: bool
    dow_star: bool
    minute_star: bool
    hour_star: bool

    @property
    def wildcard(self) -> bool:
        """Cronie's MIN_STAR | HR_STAR: the minute or hour field begins with '*'."""
        return self.minute_star or self.hour_star


def _number(token: str, names: list[str] | None, first: int) -> int:
    if names is not None and token.lower() in names:
        return names.index(token.lower()) + first
    return int(token)


def _expand(text: str, low: int, high: int, names: list[str] | None = None,
            first: int = 0) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            a, b = low, high
        elif "-" in span:
            left, right = span.split("-")
            a, b = _number(left, names, first), _number(right, names, first)
        else:
            a = b = _number(span, names, first)
        assert low <= a <= b <= high, text
        out.update(range(a, b + 1, step))
    return frozenset(out)


def parse(expr: str) -> Job:
    """Read a valid crontab(5) expression or macro."""
    text = expr.strip()
    text = MACROS.get(text.lower(), text)
    fields = text.split()
    assert len(fields) == 5, expr
    dow = _expand(fields[4], 0, 7, DAYS, 0)
    return Job(
        minute=_expand(fields[0], 0, 59),
        hour=_expand(fields[1], 0, 23),
        dom=_expand(fields[2], 1, 31),
        month=_expand(fields[3], 1, 12, MONTHS, 1),
        dow=frozenset(0 if d == 7 else d for d in dow),
        dom_star=fields[2][0] == "*",
        dow_star=fields[4][0] == "*",
        minute_star=fields[0][0] == "*",
        hour_star=fields[1][0] == "*",
    )


def never_fires(job: Job) -> bool:
    """Whether no listed day of month exists in any listed month under the AND rule."""
    if job.dom_star or not job.dow_star:
        return False
    return not any(d <= LONGEST_MONTH[m] for d in job.dom for m in job.month)


def matches(job: Job, local: datetime) -> bool:
    """The crontab(5) test on a broken-down local time."""
    if local.minute not in job.minute or local.hour not in job.hour:
        return False
    if local.month not in job.month:
        return False
    dom_ok = local.day in job.dom
    dow_ok = local.isoweekday() % 7 in job.dow
    if job.dom_star or job.dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


def _local_minute(t: datetime, tz: ZoneInfo) -> int:
    offset = t.astimezone(tz).utcoffset()
    assert offset is not None
    seconds = int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return (seconds + int(offset.total_seconds())) // 60


def _runs(job: Job, minute_index: int, wild: bool, fixed: bool) -> bool:
    kind_ok = (wild and job.wildcard) or (fixed and not job.wildcard)
    return kind_ok and matches(job, NAIVE_EPOCH + minute_index * MINUTE)


def fires(expr: str, tz: ZoneInfo, after: datetime, until: datetime,
          warmup: timedelta = timedelta(hours=6)) -> list[datetime]:
    """Return the instants t, after < t <= until, at which cronie would run ``expr``.

    The loop starts ``warmup`` early so its virtual clock has settled by ``after``.
    """
    job = parse(expr)
    t = (after - warmup).astimezone(UTC).replace(second=0, microsecond=0)
    virtual = _local_minute(t, tz) - 1
    out: list[datetime] = []
    while t <= until:
        now = _local_minute(t, tz)
        diff = now - virtual
        ran = False
        if diff == 1:
            ran = _runs(job, now, True, True)
            virtual = now
        elif 1 < diff <= 5:
            ran = any(_runs(job, v, True, True) for v in range(virtual + 1, now + 1))
            virtual = now
        elif 5 < diff <= 180:
            ran = _runs(job, now, True, False)
            ran = any(_runs(job, v, False, True) for v in range(virtual + 1, now + 1)) or ran
            virtual = now
        elif -180 <= diff <= 0:
            ran = _runs(job, now, True, False)
        else:
            # A jump of more than 3 h is not DST: cronie starts over at the new time.
            ran = _runs(job, now, True, True)
            virtual = now
        if ran and t > after:
            out.append(t)
        t += MINUTE
    return out


def transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Return the instants in [start, end) where the zone's UTC offset changes."""
    found: list[datetime] = []
    step = timedelta(hours=6)
    t = start
    before = t.astimezone(tz).utcoffset()
    while t < end:
        nxt = t + step
        after = nxt.astimezone(tz).utcoffset()
        if after != before:
            lo, hi = t, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid.astimezone(tz).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            before = after
        t = nxt
    return found
