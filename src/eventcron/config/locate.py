"""Where eventcron looks: the schedule file and the ledger, by default and as named.

Holds the default file names, the environment variables every entry point shares, and the
checks of ledger URLs (``database:`` in the file, ``--database`` on the command line). Reads
the environment but no file. SQLAlchemy is imported only for a URL it must parse: a command
that only validates a file never loads the database layer (it costs more than all the rest
of validation).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final
from urllib.parse import quote

DEFAULT_CONFIG: Final = "schedules.yaml"
CONFIG_ENV: Final = "EVENTCRON_CONFIG"
DATABASE_ENV: Final = "EVENTCRON_DATABASE_URL"
STATE_DIRECTORY_ENV: Final = "STATE_DIRECTORY"  # set by systemd for StateDirectory=
DEFAULT_LEDGER_FILE: Final = "eventcron.db"  # beside the schedule file, unless told
DEFAULT_DATABASE: Final = f"sqlite:///{DEFAULT_LEDGER_FILE}"  # as the file would spell it

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def resolve_config_path(explicit: str | None) -> Path:
    """Pick the schedule file: ``--config``, then ``$EVENTCRON_CONFIG``, then the default."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def default_database(base: Path) -> str:
    """Return the ledger URL used when the file names none.

    Under systemd with ``StateDirectory=``, the ledger lives there; otherwise beside the
    schedule file (``base``).
    """
    state = os.environ.get(STATE_DIRECTORY_ENV)
    if state:
        # systemd lists several directories separated by ':' when several are configured.
        return f"sqlite:///{Path(state.split(':')[0]) / DEFAULT_LEDGER_FILE}"
    # Built here rather than parsed, to keep the database layer unloaded (see above).
    return sqlite_url(str((base / DEFAULT_LEDGER_FILE).resolve()))


def database_url(text: str) -> str:
    """Check a ledger URL; ``postgresql://`` means psycopg 3. Raise ValueError (a sentence)."""
    if _plain_sqlite(text.strip()):
        return text.strip()
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the module docstring
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise ValueError(f"{text!r} is not a database URL; write sqlite:///eventcron.db or"
                         " postgresql+psycopg://user@host/db.") from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return text.strip()
    if backend == "postgresql" and driver in ("psycopg", "psycopg2") and "+" not in (
            url.drivername):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "postgresql" and driver == "psycopg":
        return text.strip()
    if backend in ("sqlite", "postgresql"):
        raise ValueError(f"the {url.drivername!r} driver is not supported; use sqlite:/// or"
                         " postgresql+psycopg://.")
    raise ValueError(f"the ledger must be SQLite or PostgreSQL, not {backend!r}.")


def ledger_url(text: str, base: Path) -> str:
    """Check ``--database``: a URL, or a plain path meaning an SQLite file.

    A plain path (``/var/lib/eventcron/eventcron.db``, ``./x.db``, ``x.db``; ``~`` expanded)
    is made absolute against ``base``, the current folder. Raise ValueError (a sentence).
    """
    text = text.strip()
    if "://" in text:
        return database_url(text)
    if _SCHEME.match(text):
        raise ValueError(f"{text!r} is neither a database URL nor a path; write"
                         " sqlite:///eventcron.db, postgresql+psycopg://user@host/db, or a"
                         " path such as ./eventcron.db.")
    return sqlite_url(os.path.abspath(base / Path(text).expanduser()))  # symlinks as written


def resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to the schedule file's folder ``base``."""
    if _plain_sqlite(url):
        db = url[len("sqlite:///"):]
        if not db or db == ":memory:" or db.startswith("file:") or Path(db).is_absolute():
            return url
        return sqlite_url(str((base / db).resolve()))
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the module docstring

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:") or Path(name).is_absolute():
        return url
    return parsed.set(database=str((base / name).resolve())).render_as_string(hide_password=False)


def sqlite_url(path: str) -> str:
    """Return the SQLite URL of an absolute path, quoted as SQLAlchemy renders it."""
    return "sqlite:///" + quote(path, safe=" +/")


def _plain_sqlite(url: str) -> bool:
    # `sqlite:///path` with nothing to decode or parse: read without the database layer,
    # which `validate` then never imports. Anything else goes through SQLAlchemy's parser.
    return url.startswith("sqlite:///") and not any(c in url for c in "?%#@")
