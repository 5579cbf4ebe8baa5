"""Fixtures for every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """After each test, pass or fail, kill and wait for the processes it left running."""
    yield
    processes = sys.modules.get("tests.acceptance.processes")
    if processes is not None:
        processes.reap()
