"""Finding the schedule file and the ledger, for every command that needs them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eventcron import config
from eventcron.cli.output import EXIT_CONFIG, EXIT_FAILURE, Failure, count, err
from eventcron.config import locate
from eventcron.problems import InvalidInput

if TYPE_CHECKING:
    from eventcron.ledger import Ledger


def config_path(args: argparse.Namespace) -> Path:
    """Return the schedule file the command was pointed at (or the default)."""
    return config.resolve_config_path(args.config)


def load(args: argparse.Namespace, path: Path | None = None, *,
          code: int = EXIT_FAILURE) -> config.Config:
    """Load and validate the schedule file; print every problem and fail on any.

    ``path``: a file the command was given by name (the default is ``--config``'s, and only
    then does a missing file come with the hint to pass ``--config``).
    """
    named = path is not None
    path = path or config_path(args)
    if not path.exists() and not path.is_symlink():
        hint = "" if named else f"; pass --config FILE or set ${locate.CONFIG_ENV}"
        raise Failure(f"there is no schedule file at {path}{hint}.", code)
    try:
        return config.load(path)
    except InvalidInput as e:
        err(e.render())
        n = problem_count(e)
        raise Failure(f"{path} is not valid: {count(n, 'problem')}.",
                      code) from None


def problem_count(e: InvalidInput) -> int:
    """Count an invalid file's problems, those left unlisted included."""
    return e.count


def explicit_database(args: argparse.Namespace) -> str | None:
    """Return the ledger ``--database`` or ``$EVENTCRON_DATABASE_URL`` names, or None.

    Either may be a URL or a plain path to an SQLite file, relative to the current folder.
    """
    explicit = args.database or os.environ.get(locate.DATABASE_ENV)
    if not explicit:
        return None
    where = "--database" if args.database else f"${locate.DATABASE_ENV}"
    try:
        return config.ledger_url(str(explicit), Path.cwd())
    except ValueError as e:
        code = EXIT_CONFIG if args.command == "run" else EXIT_FAILURE
        raise Failure(f"{where}: {e}", code) from None


def database_url(args: argparse.Namespace, cfg: config.Config | None) -> str:
    """``--database``, then ``$EVENTCRON_DATABASE_URL``, then the file, then the default."""
    explicit = explicit_database(args)
    if explicit is not None:
        return explicit
    if cfg is not None:
        return cfg.database
    return config.default_database(Path.cwd())


@dataclass
class LedgerTarget:
    """The ledger a ledger-only command uses, and what it learnt of the schedule file."""

    url: str
    path: Path  # the schedule file looked at; it may not exist
    cfg: config.Config | None = None  # the file, when it was read and is valid
    problems: int = 0  # how many problems the file has, when it was read and is invalid

    def invalid(self) -> str:
        """Say that the file is invalid, with the problem count: part of a sentence."""
        n = self.problems
        return (f"{self.path} is not valid ({count(n, 'problem')}; `eventcron"
                " validate` lists them)")


def ledger_target(args: argparse.Namespace, *, need_config: bool = False,
                  from_invalid_file: bool = False) -> LedgerTarget:
    """Find the ledger of a command that only reads or edits it; never require a valid file.

    ``--database`` (or ``$EVENTCRON_DATABASE_URL``) names the ledger; the schedule file is
    then read only when ``need_config``, quietly: ``cfg`` is set when it is valid,
    ``problems`` counted when it is not, neither when there is none. Without them the file
    names the ledger, and a missing or invalid file is a :class:`Failure` suggesting
    ``--database``; with ``from_invalid_file``, the ``database`` key of an invalid file is
    used when that much of it can be read (:func:`config.database_of`).
    """
    path = config_path(args)
    explicit = explicit_database(args)
    exists = path.exists() or path.is_symlink()
    if explicit is not None:
        target = LedgerTarget(explicit, path)
        if need_config and exists:
            try:
                target.cfg = config.load(path)
            except InvalidInput as e:
                target.problems = problem_count(e)
        return target
    if not exists:
        raise Failure(f"there is no schedule file at {path}; pass --config FILE or set"
                      f" ${locate.CONFIG_ENV}, or name the ledger with --database URL or"
                      " PATH.")
    try:
        cfg = config.load(path)
    except InvalidInput as e:
        target = LedgerTarget("", path, problems=problem_count(e))
    else:
        return LedgerTarget(cfg.database, path, cfg)
    url = config.database_of(path) if from_invalid_file else None
    if url is None:
        raise Failure(f"{target.invalid()}, and it names the ledger; pass --database URL or"
                      " PATH to use the ledger without it.")
    target.url = url
    return target


@contextmanager
def ledger_only(args: argparse.Namespace, *, need_config: bool = False,
                from_invalid_file: bool = False) -> Iterator[tuple[Ledger, LedgerTarget]]:
    """Open the ledger of a command that only reads or edits it, and close it afterwards.

    The ledger is found by :func:`ledger_target` (same keywords) and opened without
    creating it, so a mistyped ``--database`` is an error rather than a new empty ledger.
    """
    target = ledger_target(args, need_config=need_config, from_invalid_file=from_invalid_file)
    ledger = open_ledger(target.url)
    try:
        yield ledger, target
    finally:
        ledger.close()


def open_ledger(url: str, *, code: int = EXIT_FAILURE, create: bool = False) -> Ledger:
    """Open a ledger; a failure is a sentence, exit 1 if it may pass, else ``code``."""
    from eventcron.ledger import Ledger, LedgerError

    try:
        return Ledger.open(url, create=create)
    except LedgerError as e:
        # An unreachable or locked database may come back: exit 1, so systemd retries.
        raise Failure(str(e), EXIT_FAILURE if e.temporary else code) from None
