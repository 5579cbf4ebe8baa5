"""Who receives events: the ``audiences`` section and inline ``users`` lists of the file.

Reads named audiences (inline users or a CSV file, scanned by
:mod:`eventcron.config.audience`) and a schedule's own users into :class:`Audience`
objects, recording problems on a :class:`~eventcron.config.fields.FieldReader`. Touches the
CSV files an audience names, to scan them; nothing else outside the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from eventcron.config import schema
from eventcron.config.audience import (
    ID_COLUMN,
    TZ_COLUMN,
    Audience,
    Member,
    check_id,
    duplicate_message,
    scan_csv,
)
from eventcron.config.fields import FieldReader
from eventcron.config.yamlsource import MappingNode, Node, Scalar, SequenceNode, entries, kind_of

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # usable as ${user.<field>}


def audiences(r: FieldReader, node: Node) -> dict[str, Audience | None]:
    """Read the ``audiences`` section; an audience with problems maps to None."""
    out: dict[str, Audience | None] = {}
    if isinstance(node, Scalar) and node.is_null:
        return out
    if not isinstance(node, MappingNode):
        r.error(node, f"audiences must be a mapping of names to audiences, not"
                f" {kind_of(node)}.")
        return out
    for key, value in entries(node):
        name = key.text
        if name in out:
            r.error(key, f"the audience {name!r} is defined twice.")
            continue
        problem = check_id(name, "the audience name")
        if problem:
            r.error(key, problem)
            continue
        out[name] = _audience(r, value, f"audience {name!r}", name)
    return out


def _audience(r: FieldReader, node: Node, where: str, name: str) -> Audience | None:
    f = r.mapping(node, schema.AUDIENCE, where)
    if f is None:
        return None
    if len(f) != 1:
        r.error(node, f"{where} needs exactly one of 'users' or 'file'.")
        return None
    if "users" in f:
        return inline_users(r, f["users"][1], where, name)
    return _csv_audience(r, f["file"][1], where, name)


def _csv_audience(r: FieldReader, node: Node, where: str, name: str) -> Audience | None:
    text = r.string(node, f"{where}: file")
    if text is None:
        return None
    path = Path(text)
    if not path.is_absolute():
        path = r.base / path
    scan = r.csv_file(node, where, text, path, scan_csv, kind="audience file")
    if scan is None:
        return None
    return Audience(name, scan.columns, frozenset(scan.timezones), scan.size, file=path,
                    stamp=scan.stamp)


def inline_users(r: FieldReader, node: Node, where: str, name: str | None) -> Audience | None:
    """Read a ``users`` list into an audience (``name`` None for a schedule's own users)."""
    if not isinstance(node, SequenceNode) or not node.items:
        what = "an empty list" if isinstance(node, SequenceNode) else kind_of(node)
        r.error(node, f"{where}: users must be a list of at least one user, not {what}.")
        return None
    raw: list[tuple[Node, str, str | None, dict[str, str]]] = []
    ok = True
    seen: dict[str, int] = {}
    for item in node.items:
        parsed = _user(r, item, where)
        if parsed is None:
            ok = False
            continue
        uid, tz, extra = parsed
        if uid in seen:
            first = f"{r.name}:{seen[uid]}"
            r.error(item, f"{where}: {duplicate_message(uid, first)}")
            ok = False
            continue
        seen[uid] = item.line
        raw.append((item, uid, tz, extra))
    if not ok:
        return None
    columns = tuple(dict.fromkeys(k for _, _, _, extra in raw for k in extra))
    members = tuple(Member(uid, tz, tuple(extra.get(c, "") for c in columns))
                    for _, uid, tz, extra in raw)
    gaps = {c: next(uid for _, uid, _, extra in raw if c not in extra)
            for c in columns if any(c not in extra for _, _, _, extra in raw)}
    return Audience(name, columns, frozenset(m.timezone for m in members), len(members),
                    members=members, gaps=gaps)


def _user(r: FieldReader, node: Node, where: str) -> tuple[str, str | None, dict[str, str]] | None:
    if isinstance(node, Scalar):
        plain_id = r.name_value(node, f"{where}: a user id")
        return (plain_id, None, {}) if plain_id is not None else None
    if not isinstance(node, MappingNode):
        r.error(node, f"{where}: a user must be an id or a mapping with 'id', not"
                f" {kind_of(node)}.")
        return None
    uid: str | None = None
    tz: str | None = None
    extra: dict[str, str] = {}
    ok = True
    seen: set[str] = set()
    for key, value in entries(node):
        k = key.text
        if k in seen:
            r.error(key, f"{where}: the field {k!r} appears twice for one user.")
            ok = False
            continue
        seen.add(k)
        if k in ("id", ID_COLUMN):
            uid = r.name_value(value, f"{where}: the user id")
            ok = ok and uid is not None
        elif k == TZ_COLUMN:
            tz = r.zone(value, f"{where}: timezone")
            ok = ok and tz is not None
        elif isinstance(value, Scalar) and not value.is_null:
            if not _FIELD_NAME.fullmatch(k):
                r.error(key, f"{where}: the field name {k!r} must be letters, digits and"
                        " underscores, to be usable as ${user." + k + "}.")
                ok = False
                continue
            extra[k] = value.text
        else:
            r.error(value, f"{where}: the user field {k!r} must be a single value, not"
                    f" {kind_of(value)}.")
            ok = False
    if uid is None:
        if ok:
            r.error(node, f"{where}: this user has no 'id'.")
        return None
    return (uid, tz, extra) if ok else None
