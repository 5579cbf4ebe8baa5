"""A whole schedule file in, a :class:`~eventcron.config.model.Config` out, or every problem.

Reads the file's bytes, parses them with :mod:`eventcron.config.yamlsource` and reads the
top level, handing each section to :mod:`~eventcron.config.settings`,
:mod:`~eventcron.config.users`, :mod:`~eventcron.config.schedules`,
:mod:`~eventcron.config.suppress` or :mod:`~eventcron.config.rules`. A file with any
problem yields no Config at all, so a bad edit is never half-applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from eventcron.config import rules, schema, settings
from eventcron.config.fields import FieldReader, shown
from eventcron.config.locate import default_database
from eventcron.config.model import Config, Delivery, Endpoint, Schedule
from eventcron.config.schedules import schedules
from eventcron.config.suppress import suppression
from eventcron.config.units import format_duration
from eventcron.config.users import audiences
from eventcron.config.yamlsource import MappingNode, Node, Scalar, entries, parse_bytes, read_raw
from eventcron.problems import InvalidInput


def load(path: Path) -> Config:
    """Read, parse and validate a schedule file; raise :class:`InvalidInput` on any problem."""
    return load_bytes(read_raw(path), path)


def load_bytes(raw: bytes, path: Path) -> Config:
    """Parse and validate ``raw`` as if it were the file at ``path`` (paths relative to it).

    For a plan kept in the ledger: ``eventcron diff`` reads what was applied this way.
    """
    cfg = _config(FieldReader(path), parse_bytes(raw, str(path)))
    return dataclasses.replace(cfg, sha256=hashlib.sha256(raw).hexdigest(),
                               source=raw.decode("utf-8", "replace"))


def database_of(path: Path) -> str | None:
    """Return the ledger URL a schedule file names, reading nothing but its ``database`` key.

    For a file that is invalid elsewhere: when it parses as YAML with a mapping at the top,
    its single ``database`` value (relative SQLite paths resolved as :func:`load` does), or
    the default ledger when it has none. None when even that much cannot be read.
    """
    try:
        root = parse_bytes(read_raw(path), str(path))
    except InvalidInput:
        return None
    if not isinstance(root, MappingNode):
        return None
    found = [value for key, value in entries(root) if key.text == "database"]
    if not found:
        return default_database(path.parent)
    r = FieldReader(path)
    url = settings.database(r, found[0]) if len(found) == 1 else None
    return url if not r.problems else None


def _config(r: FieldReader, root: Node) -> Config:
    top = r.mapping(root, schema.TOP, "the file")
    if top is None or (not top and not isinstance(root, MappingNode)):
        r.problems.raise_if_any()
    top = top or {}
    if "version" not in top:
        r.problems.add(r.name, root.line, root.col, "the file needs 'version: 1' at the top.")
    else:
        value = top["version"][1]
        if not (isinstance(value, Scalar) and value.plain and value.text == "1"):
            r.error(value, f"version must be 1, not {shown(value)}; this eventcron"
                    " reads version 1 files.")
    endpoint = settings.endpoint(r, top["endpoint"][1]) if "endpoint" in top else Endpoint()
    delivery = settings.delivery(r, top["delivery"][1]) if "delivery" in top else Delivery()
    if endpoint is not None and delivery is not None and (
            delivery.claim_lease <= endpoint.timeout):
        where = top["delivery"][1] if "delivery" in top else root
        r.error(where, f"delivery.claim_lease ({format_duration(delivery.claim_lease)})"
                f" must be longer than endpoint.timeout"
                f" ({format_duration(endpoint.timeout)}), or a slow request could be"
                " taken over and sent twice.")
    database = settings.database(r, top["database"][1]) if "database" in top else (
        default_database(r.base))
    named = audiences(r, top["audiences"][1]) if "audiences" in top else {}
    listen = settings.metrics(r, top["metrics"][1]) if "metrics" in top else None
    suppress = suppression(r, top["suppress"][1]) if "suppress" in top else None
    per_user = rules.limits(r, top["limits"][1])[1] if "limits" in top else None
    context = rules.RuleContext(
        quiet_hours=delivery.quiet_hours if delivery is not None else None,
        user_nodes=rules.inline_user_nodes(top["audiences"][1]) if "audiences" in top else {})
    found: tuple[Schedule, ...] = ()
    if "schedules" not in top:
        r.problems.add(r.name, root.line, root.col, "the file has no 'schedules' list.")
    else:
        found = schedules(r, top["schedules"][1], named, context)
    r.problems.raise_if_any()
    assert endpoint is not None and delivery is not None and database is not None
    return Config(r.path, database, endpoint, delivery,
                  {k: v for k, v in named.items() if v is not None}, found, listen,
                  suppress, per_user)
