"""How eventcron words things, for the command line and the logs alike."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """Return ``1 row``, ``2 rows``, ``1,000 rows``: one rule for counts in messages."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
