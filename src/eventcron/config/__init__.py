"""The schedule file: YAML in, a frozen and fully validated :class:`Config` out.

Every problem in a file is reported at once as ``path:line:col: message``; a file with any
problem yields no Config at all, so a bad edit is never half-applied. The package in reading
order: :mod:`~eventcron.config.locate` (where the file and the ledger are),
:mod:`~eventcron.config.yamlsource` (YAML with positions), :mod:`~eventcron.config.units`,
:mod:`~eventcron.config.fields` (typed values), the sections (:mod:`~eventcron.config.settings`,
:mod:`~eventcron.config.users`, :mod:`~eventcron.config.schedules`), assembled by
:mod:`~eventcron.config.reader` into the objects of :mod:`~eventcron.config.model`.
:mod:`~eventcron.config.schema` lists the keys and prints the model's defaults.

This module re-exports the names callers use. Importing it stays light: no database, HTTP or
scheduler library is loaded (``eventcron validate`` relies on that).
"""

from __future__ import annotations

from eventcron.config import locate
from eventcron.config.locate import (
    database_url,
    default_database,
    ledger_url,
    resolve_config_path,
    sqlite_url,
)
from eventcron.config.model import (
    DEFAULT_ZONE,
    USER_ZONE,
    CatchUpMode,
    Config,
    Delivery,
    Endpoint,
    Kind,
    Schedule,
    TokenSource,
)
from eventcron.config.reader import database_of, load
from eventcron.config.units import format_duration, parse_duration, parse_listen

__all__ = [
    "DEFAULT_ZONE",
    "USER_ZONE",
    "CatchUpMode",
    "Config",
    "Delivery",
    "Endpoint",
    "Kind",
    "Schedule",
    "TokenSource",
    "database_of",
    "database_url",
    "default_database",
    "format_duration",
    "ledger_url",
    "load",
    "locate",
    "parse_duration",
    "parse_listen",
    "resolve_config_path",
    "sqlite_url",
]
