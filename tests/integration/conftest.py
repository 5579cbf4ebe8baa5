"""Ledger URLs for integration tests: a real SQLite file, and PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventcron.ledger import Ledger
from tests.pg import postgres_url, reset_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty ledger on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = postgres_url()
    reset_postgres(url)
    yield url
    reset_postgres(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_line(request: pytest.FixtureRequest) -> Iterator[str]:
    """Yield the ``database:`` line of a schedule file: none (SQLite beside it), or PostgreSQL."""
    if request.param == "sqlite":
        yield ""
        return
    url = postgres_url()
    reset_postgres(url)
    yield f'database: "{url}"\n'
    reset_postgres(url)


# The ledger contract suites (test_ledger.py, test_ledger_campaign.py) run on each backend;
# files with a `ledger` fixture of their own (on `ledger_url`) override this one.
@pytest.fixture(params=["sqlite", "memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Yield an open, empty ledger: an SQLite file, SQLite in memory, or PostgreSQL."""
    if request.param == "postgresql":
        url = postgres_url()
        reset_postgres(url)
    else:
        url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url)
    yield ledger
    ledger.close()
    if request.param == "postgresql":
        reset_postgres(url)
