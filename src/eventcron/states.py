"""The states a ledger row can be in: names every command and the ledger share.

A module of its own, without the database layer, so the command line can name states in its
options without importing SQLAlchemy.
"""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["pending", "delivered", "failed", "expired", "cancelled", "suppressed"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "delivered", "failed", "expired", "cancelled",
                                       "suppressed")
# suppressed: the campaign rules kept it from being sent (an opt-out, a per-user skip date or
# holiday, a full frequency cap); replayed only when asked (`replay --include-suppressed`).
FINAL_STATUSES: Final = ("delivered", "failed", "expired", "cancelled", "suppressed")
REPLAYABLE: Final = ("failed", "expired")
# How the reason of a row held by quiet hours starts (it is pending, not failing): the
# dispatcher writes it, and the endpoint's health leaves such rows out.
QUIET_HOLD: Final = "held for quiet hours"
# The schedule id under which the ledger records the events of `eventcron send`: no schedule
# of a file may take it.
SEND_SCHEDULE: Final = "-"
