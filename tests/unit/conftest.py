"""Fixtures for unit tests: a ledger in memory, for fast tests of firing and dispatch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventcron.ledger import Ledger


@pytest.fixture
def memory_ledger() -> Iterator[Ledger]:
    """Yield a migrated, empty in-memory ledger (``sqlite://``), closed after the test.

    It is one connection shared by every thread, so a :class:`LedgerThread` over it sees
    what the test's own thread wrote, and the other way round.
    """
    ledger = Ledger.open("sqlite://")
    try:
        yield ledger
    finally:
        ledger.close()
