"""Ledger URLs for integration tests: a real SQLite file, and PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
