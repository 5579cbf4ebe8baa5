"""The campaign keys of the file: quiet hours, frequency caps, skip dates and holiday regions.

Pure text-to-value parsers that raise ValueError with a sentence (:func:`parse_clock`,
:func:`parse_cap`, :func:`parse_dates`), and the readers that put those sentences at a file
location through a :class:`~eventcron.config.fields.FieldReader`. The opt-out list has its
own module, :mod:`eventcron.config.suppress`. Reads one audience CSV column when a schedule
takes its holiday regions from it (``skip.holidays: user.<column>``); nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Final, get_args

from eventcron.config import schema
from eventcron.config.audience import (
    ID_COLUMN,
    MAX_CSV_PROBLEMS,
    TZ_COLUMN,
    Audience,
    _read_rows,  # the audience reader's own row parser, so lines are counted alike
)
from eventcron.config.fields import FieldReader, Keyed, shown
from eventcron.config.model import MAX_CAP_COUNT, Cap, CapUnit, QuietHours, Skip
from eventcron.config.yamlsource import MappingNode, Node, Scalar, SequenceNode, entries, kind_of
from eventcron.problems import did_you_mean, quote_list
from eventcron.timing.holidays import check_region

NONE: Final = schema.NONE  # `quiet_hours: none`: no window
EXEMPT: Final = schema.EXEMPT  # a schedule's `limits: exempt`: neither counted nor capped
REGION_PREFIX: Final = "user."  # `skip.holidays: user.<column>`: each user's own region
MAX_RANGE_DAYS: Final = 366  # days one `a..b` range of skip.dates may cover
MAX_SKIP_DATES: Final = 3660  # distinct days of one schedule's skip.dates: ten years
MAX_REGION_VALUES: Final = 1000  # distinct values of a region column before it is refused

CAP_UNITS: Final[tuple[CapUnit, ...]] = get_args(CapUnit)
_CLOCK: Final = re.compile(r"\s*(\d{1,2}):(\d{2})\s*")
_DAY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_CAP: Final = re.compile(r"\s*([^\s/]+)\s*/\s*(\S+)\s*")
_CAP_WORDS: Final = re.compile(r"\s*(\d+)\s+(?:per|a|an|each|every)\s+(\w+)\s*", re.IGNORECASE)
_WINDOW_TEXT: Final = re.compile(r"\s*(\d{1,2}:\d{2})\s*(?:-|to|\.\.)\s*(\d{1,2}:\d{2})\s*")
# Spellings people reach for, each mapped to the unit the file uses.
_UNIT_ALIASES: Final = {
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "hourly": "h",
    "d": "day", "days": "day", "daily": "day",
    "w": "week", "wk": "week", "wks": "week", "weeks": "week", "weekly": "week",
}
_ADVERBS: Final = {"hourly": "1/h", "daily": "1/day", "weekly": "1/week"}


# --- pure parsers ---------------------------------------------------------------------------

def parse_clock(text: str) -> time:
    """Parse ``HH:MM`` (00:00 to 23:59) into a time; raise ValueError with a sentence."""
    m = _CLOCK.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time of day; write it as HH:MM, such as 21:00.")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 23 or minute > 59:
        midnight = " (write 00:00 for midnight)" if (hour, minute) == (24, 0) else ""
        raise ValueError(f"{text!r} is not a time of day from 00:00 to 23:59{midnight}.")
    if len(m.group(1)) == 1:
        raise ValueError(f"{text!r}: write the hour with two digits, '{hour:02d}:{minute:02d}'.")
    return time(hour, minute)


def parse_cap(text: str) -> Cap:
    """Parse ``N/unit`` (N a whole number >= 1, unit h, day or week); raise ValueError."""
    stripped = text.strip()
    form = "write it as N/unit with the unit h, day or week, such as 1/day or 3/week"
    if stripped.lower() in _ADVERBS:
        raise ValueError(f"{text!r} is not a cap (did you mean"
                         f" {_ADVERBS[stripped.lower()]!r}?); {form}.")
    if stripped.isdecimal():
        raise ValueError(f"{text!r} has no unit (did you mean '{int(stripped)}/day'?); {form}.")
    m = _CAP.fullmatch(stripped)
    if m is None:
        words = _CAP_WORDS.fullmatch(stripped)
        said = _UNIT_ALIASES.get(words.group(2).lower(), words.group(2).lower()) if words else ""
        hint = f" (did you mean '{int(words.group(1))}/{said}'?)" if (
            words and said in CAP_UNITS) else ""
        raise ValueError(f"{text!r} is not a cap{hint}; {form}.")
    count_text, unit_text = m.groups()
    if not (count_text.isascii() and count_text.isdecimal()) or int(count_text) < 1:
        raise ValueError(f"{text!r}: the count must be a whole number of at least 1, not"
                         f" {count_text!r}; to leave users uncapped, leave the cap out.")
    count = int(count_text)
    if count > MAX_CAP_COUNT:
        raise ValueError(f"{text!r}: the count may be at most {MAX_CAP_COUNT:,}.")
    if unit_text not in CAP_UNITS:
        alias = _UNIT_ALIASES.get(unit_text.lower(), unit_text.lower())
        hint = f" (did you mean '{count}/{alias}'?)" if alias in CAP_UNITS else ""
        raise ValueError(f"{text!r} has the unit {unit_text!r}{hint}; the unit must be h,"
                         " day or week.")
    return Cap(count, unit_text)  # narrowed to a CapUnit by the check above


def parse_day(text: str) -> date:
    """Parse a ``YYYY-MM-DD`` date; raise ValueError with a sentence."""
    value = text.strip()
    if not _DAY.fullmatch(value):
        raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD such as 2026-12-24, or a"
                         " range such as 2026-12-31..2027-01-01.")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a date: {e}.") from None


def parse_dates(text: str) -> tuple[date, date]:
    """Parse a date or an inclusive range ``a..b`` into its first and last day.

    Raises ValueError when a bound is not a date, the range ends before it starts, or it
    covers more than :data:`MAX_RANGE_DAYS` days.
    """
    first_text, dots, last_text = text.partition("..")
    first = parse_day(first_text)
    last = parse_day(last_text) if dots else first
    if last < first:
        raise ValueError(f"the range {text.strip()!r} ends before it starts; write"
                         f" {last}..{first}.")
    count = (last - first).days + 1
    if count > MAX_RANGE_DAYS:
        raise ValueError(f"the range {text.strip()!r} covers {count:,} days; a range may cover"
                         f" at most {MAX_RANGE_DAYS}, so write one range per year.")
    return first, last


def days(first: date, last: date) -> Iterator[date]:
    """Yield every day from ``first`` to ``last``, both included."""
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def region_column(text: str) -> str | None:
    """Return ``country`` for ``user.country``, or None for a region such as ``DE``."""
    value = text.strip()
    return value[len(REGION_PREFIX):] if value.startswith(REGION_PREFIX) else None


# --- readers --------------------------------------------------------------------------------

@dataclass(slots=True)
class RuleContext:
    """What the campaign keys of schedules fall back on, and what reading them already did."""

    quiet_hours: QuietHours | None = None  # delivery.quiet_hours: every schedule's default
    user_nodes: dict[str, Node] = field(default_factory=dict)  # inline audience -> its users
    checked: dict[tuple[int, str], bool] = field(default_factory=dict)  # region columns read


def inline_user_nodes(audiences: Node) -> dict[str, Node]:
    """Return the ``users`` list node of each inline audience of the ``audiences`` section."""
    out: dict[str, Node] = {}
    if isinstance(audiences, MappingNode):
        for name, value in entries(audiences):
            if isinstance(value, MappingNode):
                out.update((name.text, v) for k, v in entries(value) if k.text == "users")
    return out


def quiet_hours(r: FieldReader, node: Node, what: str) -> tuple[bool, QuietHours | None]:
    """Read ``{from, to}`` or ``none``: (no problem, the window or None)."""
    example = 'write {from: "21:00", to: "08:00"}, or none for no quiet hours'
    if isinstance(node, Scalar):
        if node.tag is None and node.text == NONE:
            return True, None
        m = _WINDOW_TEXT.fullmatch(node.text)
        if node.is_null:
            r.error(node, f"{what} has no value; {example}.")
        elif m:
            r.error(node, f"{what} must be a mapping: write {{from: \"{m.group(1)}\","
                    f" to: \"{m.group(2)}\"}}.")
        else:
            r.error(node, f"{what} must be a mapping such as {{from: \"21:00\", to:"
                    f" \"08:00\"}}, or none, not {shown(node)}.")
        return False, None
    f = r.mapping(node, schema.QUIET_WINDOW, what)
    if f is None:
        return False, None
    missing = [k for k in ("from", "to") if k not in f]
    if missing:
        has = "neither" if len(missing) == 2 else f"no {missing[0]!r}"
        r.error(node, f"{what} needs both 'from' and 'to'; it has {has}.")
    start = r.parsed(f["from"][1], f"{what}.from", parse_clock) if "from" in f else None
    end = r.parsed(f["to"][1], f"{what}.to", parse_clock) if "to" in f else None
    if start is None or end is None:
        return False, None
    if start == end:
        r.error(f["to"][1], f"{what}: from and to are both {start:%H:%M}, which leaves no"
                " window; write none to send at any hour.")
        return False, None
    return True, QuietHours(start, end)


def limits(r: FieldReader, node: Node) -> tuple[bool, Cap | None]:
    """Read the top-level ``limits`` section: (no problem, ``per_user`` or None)."""
    f = r.mapping(node, schema.LIMITS, "limits")
    if f is None:
        return False, None
    if "per_user" not in f:
        return True, None
    cap = r.parsed(f["per_user"][1], "limits.per_user", parse_cap)
    return cap is not None, cap


def schedule_rules(r: FieldReader, f: Keyed, where: str, audience: Audience | None,
                   context: RuleContext) -> tuple[bool, QuietHours | None, Skip, bool]:
    """Read a schedule's ``quiet_hours``, ``skip`` and ``limits``.

    Returns (no problem, the quiet window in force, the skip rules, exempt); the window is
    the schedule's own, else ``context.quiet_hours``.
    """
    ok, quiet = True, context.quiet_hours
    if "quiet_hours" in f:
        ok, quiet = quiet_hours(r, f["quiet_hours"][1], f"{where}: quiet_hours")
    found = Skip()
    if "skip" in f:
        users = f["users"][1] if "users" in f else (
            context.user_nodes.get(audience.name) if audience and audience.name else None)
        read = _skip(r, f["skip"][1], where, audience, users=users, context=context)
        ok = ok and read is not None
        found = read or found
    exempt = False
    if "limits" in f:
        value = f["limits"][1]
        if isinstance(value, Scalar) and value.tag is None and value.text == EXEMPT:
            exempt = True
        else:
            hint = (" The cap itself is set once, at the top: limits: {per_user: 1/day}."
                    if isinstance(value, MappingNode) else "")
            r.error(value, f"{where}: limits must be 'exempt' (neither counted nor capped),"
                    f" not {shown(value)}.{hint}")
            ok = False
    return ok, quiet, found, exempt


def _skip(r: FieldReader, node: Node, where: str, audience: Audience | None, *,
          users: Node | None, context: RuleContext) -> Skip | None:
    f = r.mapping(node, schema.SKIP, f"{where}: skip")
    if f is None:
        return None
    ok = True
    dates: frozenset[date] = frozenset()
    if "dates" in f:
        read = _dates(r, f["dates"][1], f"{where}: skip.dates")
        ok = read is not None
        dates = read or dates
    region = column = None
    if "holidays" in f:
        value = f["holidays"][1]
        what = f"{where}: skip.holidays"
        text = r.string(value, what)
        if text is None:
            return None
        column = region_column(text)
        if column is None:
            problem = check_region(text)
            if problem:
                r.error(value, f"{what}: {problem}")
                return None
            region = text.strip()
        elif not _region_column(r, value, what, column, audience=audience, users=users,
                                context=context):
            return None
    return Skip(dates, region, column) if ok else None


def _dates(r: FieldReader, node: Node, what: str) -> frozenset[date] | None:
    if not isinstance(node, SequenceNode):
        r.error(node, f"{what} must be a list of dates and ranges such as [2026-12-24,"
                f" 2026-12-31..2027-01-01], not {kind_of(node)}.")
        return None
    out: set[date] = set()
    ok = True
    for item in node.items:
        span = r.parsed(item, what, parse_dates)
        if span is None:
            ok = False
            continue
        first, last = span
        out.update(days(first, last))
        if len(out) > MAX_SKIP_DATES:
            # Bounds the memory a file can make the reader spend on one schedule.
            r.error(item, f"{what} covers more than {MAX_SKIP_DATES:,} days; list at most"
                    " ten years of them.")
            return None
    return frozenset(out) if ok else None


def _region_column(r: FieldReader, node: Node, what: str, column: str, *,
                   audience: Audience | None, users: Node | None,
                   context: RuleContext) -> bool:
    """Check that the audience has the region column and every value in it is a region."""
    if column in (ID_COLUMN, "id", TZ_COLUMN):
        held = "time zones" if column == TZ_COLUMN else "ids"
        r.error(node, f"{what}: user.{column} holds {held}, not regions; name a column of"
                " ISO 3166 codes such as 'DE' or 'DE-BY'.")
        return False
    if audience is None:
        return True  # the audience's own problem is reported where it is
    if column not in audience.columns:
        label = (f"audience {audience.name!r} does" if audience.name
                 else "this schedule's users do")
        has = (f"it has {quote_list(audience.columns)}" if audience.columns
               else "it has no columns besides app_user_id and timezone")
        r.error(node, f"{what}: user.{column} names the column {column!r}, which {label}"
                f" not have{did_you_mean(column, audience.columns)} ({has}).")
        return False
    key = (id(audience), column)  # audiences live as long as the read: ids are unique
    if key not in context.checked:
        # Each column of an audience is checked once, however many schedules use it.
        context.checked[key] = (_scan_column(r, node, what, audience, column)
                                if audience.file is not None
                                else _check_users(r, node, what, audience, column,
                                                  users=users))
    return context.checked[key]


def _check_users(r: FieldReader, node: Node, what: str, audience: Audience, column: str, *,
                 users: Node | None) -> bool:
    at = audience.columns.index(column)
    places = _field_nodes(users, column)
    ok = True
    for member in audience.members or ():
        value = member.fields[at]
        problem = check_region(value) if value.strip() else None
        if problem:
            r.error(places.get(member.id, node), f"{what}: user {member.id!r} has the"
                    f" {column} {value!r}: {problem}")
            ok = False
    return ok


def _field_nodes(users: Node | None, column: str) -> dict[str, Node]:
    """Map each inline user's id to the node of its ``column`` value, to point at it."""
    out: dict[str, Node] = {}
    for item in users.items if isinstance(users, SequenceNode) else ():
        if isinstance(item, MappingNode):
            found = {k.text: v for k, v in entries(item)}
            uid = found.get("id") or found.get(ID_COLUMN)
            if isinstance(uid, Scalar) and column in found:
                out.setdefault(uid.text, found[column])
    return out


def _scan_column(r: FieldReader, node: Node, what: str, audience: Audience,
                 column: str) -> bool:
    """Stream the column's distinct values once and report those that are no region."""
    assert audience.file is not None
    path = audience.file
    at = audience.columns.index(column)
    first: dict[str, int] = {}  # value -> the line it first appears on
    # Rows the audience scan refused were reported by it; they are passed over here.
    for line, member in _read_rows(path, problems=None):
        value = member.fields[at].strip()
        if value and value not in first:
            if len(first) >= MAX_REGION_VALUES:
                r.error(node, f"{what}: the column {column!r} of {path} has more than"
                        f" {MAX_REGION_VALUES:,} different values (one more on line {line:,});"
                        " it does not look like a column of regions such as 'DE' or 'DE-BY'.")
                return False
            first[value] = line
    bad = sorted((line, value, problem) for value, line in first.items()
                 if (problem := check_region(value)) is not None)
    if not bad:
        return True
    r.error(node, f"{what}: the column {column!r} of the CSV file has {len(bad)} values that"
            " are not regions (listed with their own file and line).")
    for line, value, problem in bad[:MAX_CSV_PROBLEMS]:
        r.problems.add(str(path), line, None, f"{column} {value!r}: {problem}")
    if len(bad) > MAX_CSV_PROBLEMS:
        r.problems.add(str(path), bad[MAX_CSV_PROBLEMS][0], None,
                       f"... and {len(bad) - MAX_CSV_PROBLEMS} more values that are not regions.")
    return False
