"""The ``schedules`` list of the file: timing, window, audience and data of each schedule.

Reads each schedule into a :class:`~eventcron.config.model.Schedule` (keys left out take the
model's defaults), checking its cron expression, its time zone, the audience it names and
every ``${placeholder}`` of its data against that audience; its campaign keys
(``quiet_hours``, ``skip``, ``limits``) are read by :mod:`eventcron.config.rules`. Problems
are recorded on a :class:`~eventcron.config.fields.FieldReader`; reads nothing outside the
file but an audience's region column (``skip.holidays: user.<column>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from eventcron.config import schema
from eventcron.config.audience import ID_COLUMN, TZ_COLUMN, Audience, check_id
from eventcron.config.fields import FieldReader, Keyed
from eventcron.config.model import DEFAULT_ZONE, MIN_EVERY, Kind, Schedule, field_default
from eventcron.config.rules import RuleContext, schedule_rules
from eventcron.config.template import BUILTIN_NAMES, USER_PREFIX, DataTemplate, placeholders
from eventcron.config.users import inline_users
from eventcron.config.yamlsource import (
    DataError,
    MappingNode,
    Node,
    Scalar,
    SequenceNode,
    entries,
    kind_of,
    to_json,
)
from eventcron.problems import did_you_mean, quote_list
from eventcron.states import SEND_SCHEDULE
from eventcron.timing import CronExpr, CronSyntaxError

_When = tuple[Kind | None, CronExpr | None, float | None, datetime | None]


def schedules(r: FieldReader, node: Node, audiences: dict[str, Audience | None],
              context: RuleContext | None = None) -> tuple[Schedule, ...]:
    """Read the ``schedules`` list; schedules with problems are left out (and reported).

    ``context`` holds what the campaign keys fall back on (``delivery.quiet_hours``).
    """
    context = context or RuleContext()
    if not isinstance(node, SequenceNode):
        if isinstance(node, Scalar) and node.is_null:
            return ()
        r.error(node, f"schedules must be a list, not {kind_of(node)}.")
        return ()
    out: list[Schedule] = []
    ids: dict[str, int] = {}
    for index, item in enumerate(node.items):
        if r.problems.full:
            # A file this broken is not worth reading to the end; stop in bounded time.
            left = len(node.items) - index
            r.problems.add(r.name, item.line, None, f"stopped checking here after"
                           f" {len(r.problems)} problems; {left:,} more schedules"
                           " were not checked.", force=True)
            break
        sched = _schedule(r, item, index, audiences, ids=ids, context=context)
        if sched is not None:
            out.append(sched)
    return tuple(out)


def _schedule(r: FieldReader, node: Node, index: int, audiences: dict[str, Audience | None],
              *, ids: dict[str, int], context: RuleContext) -> Schedule | None:
    # Every key is checked even after a problem, so one run reports all of them; the order
    # of the checks is the order of messages at one location.
    where = f"schedules[{index}]"
    if isinstance(node, MappingNode):  # name it by its id in every message, when it has one
        given_id = next((v.text for k, v in entries(node) if k.text == "id"
                         and isinstance(v, Scalar) and not v.is_null), None)
        if given_id is not None and check_id(given_id, "id") is None:
            where = f"schedule {given_id!r}"
    f = r.mapping(node, schema.SCHEDULE, where)
    if f is None:
        return None
    ok = True
    sid: str | None = None
    if "id" in f:
        sid = r.name_value(f["id"][1], f"{where}: id")
        if sid == SEND_SCHEDULE:
            r.error(f["id"][1], f"the schedule id {sid!r} is reserved: the ledger records the"
                    " events of `eventcron send` under it. Choose another id.")
            sid, ok = None, False
        if sid is not None:
            if sid in ids:
                r.error(f["id"][1], f"the schedule id {sid!r} is used twice (first on"
                        f" line {ids[sid]}); ids must be unique.")
                ok = False
            else:
                ids[sid] = f["id"][1].line
    else:
        r.error(node, f"{where} has no 'id'.")
        ok = False
    event_type: str | None = None
    if "event_type" in f:
        event_type = r.name_value(f["event_type"][1], f"{where}: event_type")
    else:
        r.error(node, f"{where} has no 'event_type'.")

    zone = DEFAULT_ZONE
    if "timezone" in f:
        z = r.zone(f["timezone"][1], f"{where}: timezone", allow_user=True)
        ok = ok and z is not None
        zone = z or zone

    kind, cron, every, at = _when(r, f, node, where)

    jitter: float = field_default(Schedule, "jitter")
    if "jitter" in f:
        j = r.duration(f["jitter"][1], f"{where}: jitter")
        ok = ok and j is not None
        jitter = jitter if j is None else j
    window_ok, starts, ends = _window(r, f, where)
    ok = ok and window_ok
    enabled: bool = field_default(Schedule, "enabled")
    if "enabled" in f:
        e = r.boolean(f["enabled"][1], f"{where}: enabled")
        ok = ok and e is not None
        enabled = enabled if e is None else e
    description: str = field_default(Schedule, "description")
    if "description" in f:
        description = r.string(f["description"][1], f"{where}: description",
                               allow_empty=True) or description

    audience = _schedule_audience(r, f, node, where, audiences)
    template = _data(r, f["data"][1], where, audience) if "data" in f else (
        DataTemplate.compile({}))
    rules_ok, quiet, skip, exempt = schedule_rules(r, f, where, audience, context)
    if (not ok or sid is None or event_type is None or kind is None or audience is None
            or template is None or not rules_ok):
        return None
    return Schedule(sid, event_type, kind, zone, audience, template, cron=cron, every=every,
                    at=at, jitter=jitter, starts=starts, ends=ends, enabled=enabled,
                    description=description, line=node.line, quiet_hours=quiet, skip=skip,
                    exempt=exempt)


def _when(r: FieldReader, f: Keyed, node: Node, where: str) -> _When:
    """Read the one timing key (cron, every or at); the kind is None after a problem."""
    # Check every timing key given, so one run reports all of their problems.
    cron = _cron(r, f["cron"][1], where) if "cron" in f else None
    every = (r.duration(f["every"][1], f"{where}: every", minimum=MIN_EVERY)
             if "every" in f else None)
    at = r.timestamp(f["at"][1], f"{where}: at") if "at" in f else None
    given = [k for k in ("cron", "every", "at") if k in f]
    parsed = [v for v in (cron, every, at) if v is not None]
    kind: Kind | None = None
    if len(given) != 1:
        target = f[given[1]][0] if len(given) > 1 else node
        said = f"has {quote_list(given, 'and')}" if given else "has none of them"
        r.error(target, f"{where} needs exactly one of 'cron', 'every' or 'at'; it"
                f" {said}.")
    elif len(parsed) == 1:
        kind = "cron" if cron is not None else "every" if every is not None else "at"
    return kind, cron, every, at


def _window(r: FieldReader, f: Keyed, where: str) -> tuple[bool, datetime | None,
                                                           datetime | None]:
    """Read ``starts`` and ``ends``: (no problem, starts, ends)."""
    starts = r.timestamp(f["starts"][1], f"{where}: starts") if "starts" in f else None
    ends = r.timestamp(f["ends"][1], f"{where}: ends") if "ends" in f else None
    ok = not (("starts" in f and starts is None) or ("ends" in f and ends is None))
    if starts is not None and ends is not None:
        if (starts.tzinfo is None) != (ends.tzinfo is None):
            r.error(f["ends"][1], f"{where}: starts and ends must both have a UTC offset"
                    " or both have none.")
            ok = False
        elif ends <= starts:
            r.error(f["ends"][1], f"{where}: ends ({ends.isoformat()}) is not after starts"
                    f" ({starts.isoformat()}).")
            ok = False
    return ok, starts, ends


def _cron(r: FieldReader, node: Node, where: str) -> CronExpr | None:
    text = r.string(node, f"{where}: cron")
    if text is None:
        return None
    try:
        return CronExpr.parse(text)
    except CronSyntaxError as e:
        # Point into the expression when it sits on one line as written.
        assert isinstance(node, Scalar)
        single = node.end_line == node.line and node.style in (None, "'", '"')
        lead = len(text) - len(text.lstrip())
        r.error(node, f"{where}: bad cron expression {text.strip()!r}: {e}",
                offset=(e.offset + lead) if single else 0)
        return None


def _schedule_audience(r: FieldReader, f: Keyed, node: Node, where: str,
                       audiences: dict[str, Audience | None]) -> Audience | None:
    if ("audience" in f) == ("users" in f):
        target = f["users"][0] if "users" in f else node
        r.error(target, f"{where} needs exactly one of 'audience' (a name) or 'users'"
                " (a list).")
        return None
    if "users" in f:
        return inline_users(r, f["users"][1], where, None)
    value = f["audience"][1]
    name = r.string(value, f"{where}: audience")
    if name is None:
        return None
    if name not in audiences:
        known = f"; the file defines {quote_list(audiences)}" if audiences else (
            "; the file defines no audiences")
        r.error(value, f"{where}: unknown audience {name!r}"
                f"{did_you_mean(name, audiences)}{known}.")
        return None
    return audiences[name]  # None when the audience itself was invalid (reported)


def _data(r: FieldReader, node: Node, where: str, audience: Audience | None
          ) -> DataTemplate | None:
    if isinstance(node, Scalar) and node.is_null:
        return DataTemplate.compile({})
    if not isinstance(node, MappingNode):
        r.error(node, f"{where}: data must be a mapping (a JSON object), not"
                f" {kind_of(node)}.")
        return None
    try:
        value = to_json(node)
    except DataError as e:
        r.error(e.node, f"{where}: data: {e.message}")
        return None
    ok = True
    for scalar in _scalars(node):
        for offset, name in placeholders(scalar.text):
            problem = _placeholder_problem(name, audience)
            if problem:
                single = scalar.end_line == scalar.line and scalar.style in (None, "'")
                r.error(scalar, f"{where}: data: {problem}", offset=offset if single else 0)
                ok = False
    return DataTemplate.compile(value) if ok else None


def _placeholder_problem(name: str, audience: Audience | None) -> str | None:
    if name in BUILTIN_NAMES:
        return None
    if name.startswith(USER_PREFIX):
        column = name[len(USER_PREFIX):]
        if audience is None:
            return None  # the audience problem is reported on its own
        if column in (ID_COLUMN, "id"):
            return None
        if column == TZ_COLUMN:
            return None
        if column not in audience.columns:
            label = f"audience {audience.name!r}" if audience.name else "this audience"
            cols = quote_list(audience.columns) if audience.columns else "no extra fields"
            return (f"${{{name}}} names the field {column!r}, which {label} does not have"
                    f"{did_you_mean(column, audience.columns)} (it has {cols}).")
        if column in audience.gaps:
            return (f"${{{name}}} cannot be filled for user {audience.gaps[column]!r}, who"
                    f" has no {column!r} field.")
        return None
    choices = [*BUILTIN_NAMES, "user.<field>"]
    return (f"unknown placeholder ${{{name}}}{did_you_mean(name, BUILTIN_NAMES)}; known:"
            f" {', '.join(choices)}. Write $${{ for a literal ${{.")


def _scalars(node: Node) -> Iterator[Scalar]:
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue  # an alias: already checked where the anchor is
        seen.add(id(n))
        if isinstance(n, Scalar):
            yield n
        elif isinstance(n, SequenceNode):
            stack.extend(n.items)
        elif isinstance(n, MappingNode):
            for k, v in n.pairs:
                stack.append(k)
                stack.append(v)
