"""Placeholders in a schedule's ``data``: ``${name}`` replaced per user and occurrence.

A template is compiled once per schedule into JSON text split around its placeholders, so
rendering for each of a million users is one string join, and a template without
placeholders costs nothing per user. ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

PLACEHOLDER: Final = re.compile(r"\$(\$)?\{([^{}]*)\}")
#: Names every schedule may use; ``user.<field>`` names come from the audience.
BUILTIN_NAMES: Final = (
    "scheduled_for", "scheduled_for_local", "schedule_id", "event_type", "app_user_id",
)
USER_PREFIX: Final = "user."
UserRow = tuple[str, str | None, tuple[str, ...]]  # (app_user_id, timezone, fields)


def _escape(value: str) -> str:
    # The placeholder sits inside a JSON string: insert the value JSON-escaped.
    return json.dumps(value, ensure_ascii=False)[1:-1]


def placeholders(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(offset, name)`` for each placeholder in a string (escaped ``$${`` skipped)."""
    for m in PLACEHOLDER.finditer(text):
        if not m.group(1):
            yield m.start(), m.group(2)


@dataclass(frozen=True, slots=True)
class DataTemplate:
    """Compiled ``data``: literal JSON fragments alternating with placeholder names."""

    parts: tuple[str, ...]  # even indexes: JSON text; odd indexes: placeholder names
    names: frozenset[str]

    @classmethod
    def compile(cls, data: Mapping[str, Any]) -> DataTemplate:
        """Compile JSON-compatible data; placeholder names are checked by the caller."""
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
        parts: list[str] = []
        names: set[str] = set()
        literal: list[str] = []
        pos = 0
        for m in PLACEHOLDER.finditer(text):
            literal.append(text[pos:m.start()])
            if m.group(1):  # $${...}: a literal ${...}
                literal.append(m.group(0)[1:])
            else:
                parts.append("".join(literal))
                parts.append(m.group(2))
                names.add(m.group(2))
                literal = []
            pos = m.end()
        literal.append(text[pos:])
        parts.append("".join(literal))
        return cls(tuple(parts), frozenset(names))

    @property
    def constant(self) -> bool:
        """True when the rendering is the same for every user and occurrence."""
        return len(self.parts) == 1

    def renderer(self, fixed: Mapping[str, str],
                 columns: Sequence[str]) -> Callable[[UserRow], str]:
        """Return a fast ``render`` for many users of one occurrence.

        ``fixed`` holds the values shared by every user (scheduled_for, ...); per-user
        values are read from the member tuple ``(id, timezone, fields)``, with ``fields``
        in ``columns`` order. Everything that does not change per user is escaped once.
        """
        if self.constant:
            text = self.parts[0]
            return lambda _member: text
        parts = list(self.parts)
        per_user: list[tuple[int, int, int]] = []  # (part index, member slot, field index)
        for i in range(1, len(parts), 2):
            name = parts[i]
            if name in fixed:
                parts[i] = _escape(fixed[name])
            elif name in ("app_user_id", "user.app_user_id", "user.id"):
                per_user.append((i, 0, -1))
            elif name == "user.timezone":
                per_user.append((i, 1, -1))
            else:
                per_user.append((i, 2, list(columns).index(name.removeprefix(USER_PREFIX))))

        def render(member: UserRow) -> str:
            out = parts.copy()
            for i, slot, field in per_user:
                value = member[2][field] if field >= 0 else member[slot]
                out[i] = _escape(value if isinstance(value, str) else "")
            return "".join(out)

        return render

    def render(self, values: Mapping[str, str]) -> str:
        """Return the data as JSON text with each placeholder replaced by its value."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        out = list(parts)
        for i in range(1, len(parts), 2):
            # The placeholder sits inside a JSON string: insert the value JSON-escaped.
            out[i] = json.dumps(values[parts[i]], ensure_ascii=False)[1:-1]
        return "".join(out)
