"""The states a ledger row can be in: names every command and the ledger share.

A module of its own, without the database layer, so the command line can name states in its
options without importing SQLAlchemy.
"""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["pending", "delivered", "failed", "expired", "cancelled"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "delivered", "failed", "expired", "cancelled")
FINAL_STATUSES: Final = ("delivered", "failed", "expired", "cancelled")
REPLAYABLE: Final = ("failed", "expired")
