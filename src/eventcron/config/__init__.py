"""The schedule file: YAML in, a frozen and fully validated :class:`Config` out.

Every problem in a file is reported at once as ``path:line:col: message``; a file with any
problem yields no Config at all, so a bad edit is never half-applied. The package in reading
order: :mod:`~eventcron.config.locate` (where the file and the ledger are),
:mod:`~eventcron.config.yamlsource` (YAML with positions), :mod:`~eventcron.config.units`,
:mod:`~eventcron.config.fields` (typed values), the sections (:mod:`~eventcron.config.settings`,
:mod:`~eventcron.config.users`, :mod:`~eventcron.config.schedules`), assembled by
:mod:`~eventcron.config.reader` into the objects of :mod:`~eventcron.config.model`.
:mod:`~eventcron.config.schema` lists the keys and prints the model's defaults.

This module re-exports the names callers use, each imported when first used. Importing the
package stays light: no database, HTTP or scheduler library is loaded (``eventcron
validate`` relies on that), and neither is the reader (``eventcron --version`` does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from eventcron.config.reader import database_of, load, load_bytes
    from eventcron.config.units import format_duration, parse_duration, parse_listen

# Where each re-exported name lives. They are imported on first use, so that importing a
# light submodule (``eventcron.config.locate``, all that ``eventcron --version`` needs) does
# not load the reader and PyYAML with it.
_HOMES = {
    "locate": "", **dict.fromkeys(("database_url", "default_database", "ledger_url",
                                    "resolve_config_path", "sqlite_url"), "locate"),
    **dict.fromkeys(("DEFAULT_ZONE", "USER_ZONE", "CatchUpMode", "Config", "Delivery",
                     "Endpoint", "Kind", "Schedule", "TokenSource"), "model"),
    "database_of": "reader", "load": "reader", "load_bytes": "reader",
    **dict.fromkeys(("format_duration", "parse_duration", "parse_listen"), "units"),
}


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{home}" if home else f"{__name__}.{name}")
    value = module if not home else getattr(module, name)
    globals()[name] = value
    return value


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
    "load_bytes",
    "locate",
    "parse_duration",
    "parse_listen",
    "resolve_config_path",
    "sqlite_url",
]
