"""How eventcron words things, for the command line and the logs alike."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """Return ``1 row``, ``2 rows``, ``1,000 rows``: one rule for counts in messages.

    ``plural`` is for a noun that does not just add an s (``retry``, ``retries``).
    """
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def sentence(text: str) -> str:
    """Return ``text`` with its first letter capitalized and the rest as it was.

    Not ``str.capitalize``: it lowercases the rest, turning ``JWT`` into ``jwt`` and
    ``2026-12-31T17:04:37Z`` into ``2026-12-31t17:04:37z``.
    """
    return text[:1].upper() + text[1:]
