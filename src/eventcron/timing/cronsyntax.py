"""Cron expression syntax: crontab(5) text, as cronie reads it, into field sets.

Holds :class:`CronSyntaxError`, the five field specs with their month and weekday names,
the ``@`` macros, and :func:`parse_into`, which checks a text and builds the expression
object from the values it reads. Pure: text in, values or an error out; no zones, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from eventcron.timing.cron import CronExpr

_MAX_DIGITS: Final = 9  # digits read from a number token; longer ones are out of range

_MONTH_NAMES: Final = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)
_DOW_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_FULL_NAMES: Final = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)
# Longest length of each month in days, index 1-12; February counts 29 (leap years).
MONTH_MAX_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronSyntaxError(ValueError):
    """Invalid cron expression.

    ``str(err)`` is one English sentence naming the field and the problem, written to
    follow a colon (it starts in lower case), e.g. ``minute 61 is out of range 0-59.``

    Attributes:
        offset: 0-based offset of the offending token in the stripped expression
            (``CronExpr.source``); 0 when no single token is to blame.
        length: Length of the offending token, at least 1.

    """

    offset: int
    length: int

    def __init__(self, message: str, offset: int = 0, length: int = 1) -> None:
        super().__init__(message)
        self.offset = max(offset, 0)
        self.length = max(length, 1)

    def __reduce__(self) -> tuple[type[CronSyntaxError], tuple[str, int, int]]:
        # Keep offset and length when the error crosses a process boundary.
        return (type(self), (str(self), self.offset, self.length))


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """How one of the five crontab fields is read."""

    label: str  # as named in messages
    lo: int
    hi: int
    names: Mapping[str, int] | None  # three-letter names, lower case
    range_note: str  # appended to out-of-range messages


_FIELD_SPECS: Final = (
    _FieldSpec("minute", 0, 59, None, ""),
    _FieldSpec("hour", 0, 23, None, ""),
    _FieldSpec("day of month", 1, 31, None, ""),
    _FieldSpec("month", 1, 12, {n: i for i, n in enumerate(_MONTH_NAMES, 1)}, ""),
    _FieldSpec("day of week", 0, 7, {n: i for i, n in enumerate(_DOW_NAMES)},
               " (0 and 7 are Sunday)"),
)
_DOW_SPEC: Final = _FIELD_SPECS[4]
# What "*" means in each field; in day of week, 7 (Sunday again) is folded into 0.
_FULL_SETS: Final = {
    spec.label: frozenset(range(spec.lo, spec.hi + 1)) for spec in _FIELD_SPECS[:4]
} | {_DOW_SPEC.label: frozenset(range(7))}
_ALL_NAMES: Final = frozenset(_MONTH_NAMES) | frozenset(_DOW_NAMES)


def _error(message: str, offset: int = 0, length: int = 1) -> CronSyntaxError:
    return CronSyntaxError(message + ".", offset, length)


def _split_fields(text: str) -> list[tuple[int, str]]:
    """Split on spaces and tabs, returning (offset, token) pairs."""
    out: list[tuple[int, str]] = []
    at = 0
    for part in text.replace("\t", " ").split(" "):
        if part:
            out.append((at, part))
        at += len(part) + 1
    return out


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _value(spec: _FieldSpec, token: str, at: int) -> int:
    """Read one number or name of a field."""
    if _is_number(token):
        # Very long digit strings are out of range anyway; int() would refuse some of them.
        n = int(token) if len(token) <= _MAX_DIGITS else None
        if n is None or not spec.lo <= n <= spec.hi:
            shown = n if n is not None else f"value of {len(token)} digits"
            raise _error(f"{spec.label} {shown} is out of range {spec.lo}-{spec.hi}"
                         f"{spec.range_note}", at, len(token))
        return n
    lower = token.lower()
    if spec.names is not None:
        found = spec.names.get(lower)
        if found is not None:
            return found
        first, last = next(iter(spec.names)), list(spec.names)[-1]
        if token.isascii() and token.isalpha():
            raise _error(f"{spec.label} {token!r} is not a {spec.label} name; use the first"
                         f" three letters ({first}-{last}) or a number"
                         f" {spec.lo}-{spec.hi}", at, len(token))
        raise _error(f"{spec.label} {token!r} is not a number or a {spec.label} name",
                     at, len(token))
    hint = ""
    if lower in _ALL_NAMES:
        hint = "; names are allowed only in the month and day-of-week fields"
    raise _error(f"{spec.label} {token!r} is not a number{hint}", at, len(token))


def _reversed_hint(spec: _FieldSpec, a_tok: str, b_tok: str, lo: int, hi: int) -> str:
    """Suggest how to write a range that wraps around the end of the field."""
    top, bottom = (6, 0) if spec is _DOW_SPEC else (spec.hi, spec.lo)
    names = list(spec.names) if spec.names is not None else None
    if spec is not _DOW_SPEC and names is not None:
        names.insert(0, "")  # month names are numbered from 1
    top_tok = names[top] if names is not None and a_tok.isalpha() else str(top)
    bottom_tok = names[bottom] if names is not None and b_tok.isalpha() else str(bottom)
    head = a_tok if lo == top else f"{a_tok}-{top_tok}"
    tail = b_tok if hi == bottom else f"{bottom_tok}-{b_tok}"
    hint = f"use {head},{tail}"
    if spec is _DOW_SPEC and hi == 0:
        hint += f" or {lo}-7"
    return hint


def _parse_element(spec: _FieldSpec, elem: str, at: int) -> range:
    """Expand one list element: ``*``, ``N``, ``N-M``, ``*/S`` or ``N-M/S``."""
    slash = elem.find("/")
    step = 1
    base = elem
    if slash >= 0:
        base, step_tok = elem[:slash], elem[slash + 1:]
        step_at = at + slash + 1
        if not step_tok:
            raise _error(f"{spec.label} element {elem!r} has no step after '/'",
                         at + slash, 1)
        if "/" in step_tok:
            extra = step_tok.index("/")
            raise _error(f"{spec.label} element {elem!r} has more than one '/'",
                         step_at + extra, 1)
        if not _is_number(step_tok):
            raise _error(f"{spec.label} step {step_tok!r} is not a whole number",
                         step_at, len(step_tok))
        step = int(step_tok) if len(step_tok) <= _MAX_DIGITS else spec.hi + 1
        if step == 0:
            raise _error(f"{spec.label} step 0 is invalid; a step must be at least 1",
                         step_at, len(step_tok))
        if step > spec.hi:
            shown = step_tok if len(step_tok) <= _MAX_DIGITS else f"of {len(step_tok)} digits"
            raise _error(f"{spec.label} step {shown} is too large; the largest allowed is"
                         f" {spec.hi}", step_at, len(step_tok))
        if not base:
            raise _error(f"{spec.label} element {elem!r} has no range before '/'; use"
                         f" */{step}", at, len(elem))
    if base == "*":
        return range(spec.lo, spec.hi + 1, step)
    if base.startswith("*"):
        raise _error(f"{spec.label} element {elem!r} is not valid; '*' must stand alone"
                     " or be followed by /step", at, len(elem))
    dash = base.find("-")
    if dash < 0:
        n = _value(spec, base, at)
        if slash >= 0:
            # Vixie cron and cronie reject "N/S"; its meaning would be unclear anyway.
            raise _error(f"{spec.label} element {elem!r} has a step but no range; use"
                         f" {base}-{spec.hi}/{step}", at, len(elem))
        return range(n, n + 1)
    a_tok, b_tok = base[:dash], base[dash + 1:]
    if not a_tok:
        raise _error(f"{spec.label} range {base!r} is missing its start value", at,
                     len(base))
    if not b_tok:
        raise _error(f"{spec.label} range {base!r} is missing its end value", at,
                     len(base))
    if "-" in b_tok:
        raise _error(f"{spec.label} range {base!r} has more than one '-'",
                     at + dash + 1 + b_tok.index("-"), 1)
    lo = _value(spec, a_tok, at)
    hi = _value(spec, b_tok, at + dash + 1)
    if lo > hi:
        hint = ("write the smaller value first" if step > 1
                else _reversed_hint(spec, a_tok, b_tok, lo, hi))
        raise _error(f"{spec.label} range {base!r} is reversed; ranges run from low to"
                     f" high, so {hint}", at, len(base))
    return range(lo, hi + 1, step)


def _parse_field(spec: _FieldSpec, text: str, at: int) -> frozenset[int]:
    """Expand a comma-separated field into its set of values."""
    if text == "*":
        return _FULL_SETS[spec.label]
    values: set[int] = set()
    start = 0
    while True:
        comma = text.find(",", start)
        end = len(text) if comma < 0 else comma
        if end == start:
            # Blame the comma that leaves the element empty (leading, doubled or trailing).
            blame = start if start < len(text) else start - 1
            raise _error(f"the {spec.label} field has an empty list element (check the"
                         " commas)", at + blame, 1)
        values.update(_parse_element(spec, text[start:end], at + start))
        if comma < 0:
            break
        start = comma + 1
    if spec is _DOW_SPEC and 7 in values:
        values.discard(7)
        values.add(0)  # 7 is Sunday, as 0 is
    return frozenset(values)


def _describe_days(values: frozenset[int]) -> str:
    ordered = sorted(values)
    if len(ordered) == 1:
        return f"day of month {ordered[0]}"
    return "days of month " + ",".join(map(str, ordered))


def _never_fires(days: frozenset[int], months: frozenset[int], token: str,
                 at: int) -> CronSyntaxError:
    named = [_MONTH_FULL_NAMES[m - 1] for m in sorted(months)]
    where = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
    verb = "does" if len(days) == 1 else "do"
    return _error(f"the expression never fires: {_describe_days(days)} {verb} not exist"
                  f" in {where}", at, len(token))


def parse_into(cls: type[CronExpr], text: str) -> CronExpr:
    """Read crontab(5) ``text`` (or an ``@`` macro) and build a ``cls`` from its fields.

    Raises:
        CronSyntaxError: The expression is malformed or can never fire.

    """
    source = text.strip()
    tokens = _split_fields(source)
    if not tokens:
        raise _error("the expression is empty; write five fields: minute hour"
                     " day-of-month month day-of-week")
    if tokens[0][1].startswith("@"):
        macro_at, macro = tokens[0]
        if len(tokens) > 1:
            extra_at = tokens[1][0]
            raise _error(f"the macro {macro!r} must stand alone, without other fields",
                         extra_at, len(source) - extra_at)
        name = macro.lower()
        if name == "@reboot":
            raise _error("@reboot is not supported: eventcron has no reboot to run at; use"
                         " a one-off 'at:' time or a cron expression", macro_at, len(macro))
        expansion = _MACROS.get(name)
        if expansion is None:
            known = ", ".join(_MACROS)
            raise _error(f"the macro {macro!r} is unknown; the valid macros are {known}",
                         macro_at, len(macro))
        tokens = _split_fields(expansion)
    if len(tokens) != 5:
        count = f"{len(tokens)} field{'s' * (len(tokens) != 1)}"
        wanted = "5 (minute hour day-of-month month day-of-week)"
        if len(tokens) > 5:
            extra_at = tokens[5][0]
            seconds = "; seconds fields are not supported" if len(tokens) == 6 else ""
            raise _error(f"the expression has {count}, but cron takes {wanted}{seconds}",
                         extra_at, len(source) - extra_at)
        raise _error(f"the expression has {count}, but cron takes {wanted}", len(source), 1)
    sets = [
        _parse_field(spec, token, at)
        for spec, (at, token) in zip(_FIELD_SPECS, tokens, strict=True)
    ]
    minute_tok, hour_tok, dom_tok, _, dow_tok = (token for _, token in tokens)
    dom_restricted = not dom_tok.startswith("*")
    dow_restricted = not dow_tok.startswith("*")
    if dom_restricted and not dow_restricted:
        shortest = min(sets[2])
        if all(shortest > MONTH_MAX_DAYS[m] for m in sets[3]):
            raise _never_fires(sets[2], sets[3], dom_tok, tokens[2][0])
    return cls(
        source=source,
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=sets[4],
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        fixed_time=not minute_tok.startswith("*") and not hour_tok.startswith("*"),
    )

