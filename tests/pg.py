"""PostgreSQL for tests: the URL from the environment, and a clean slate."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine

from eventcron.ledger import metadata

PG_ENV = "EVENTCRON_TEST_DATABASE_URL"
PG_SKIP = (f"PostgreSQL tests need {PG_ENV}, e.g. "
           f"{PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test (bash .ci/run sets it)")


def postgres_url() -> str:
    """Return the test server's URL, or skip the test saying how to enable it."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP)
    return url


def reset_postgres(url: str) -> None:
    """Drop eventcron's tables so a test starts from an empty ledger."""
    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()
