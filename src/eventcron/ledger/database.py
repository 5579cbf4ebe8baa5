"""The :class:`Ledger`: one ledger database, its concerns put together.

Each concern is a class of its own module extending ``base.LedgerBase``: fire records and
job watermarks (``occurrences``), the delivery queue (``queue``), operator queries and
heartbeats (``operators``), pruning (``retention``), the audit log of plans (``plans``),
occurrences as ``eventcron history`` shows them (``history``), the events of ``eventcron
send`` (``sends``). Nothing is defined here but the sum.
"""

from __future__ import annotations

from eventcron.ledger.history import History
from eventcron.ledger.occurrences import Occurrences
from eventcron.ledger.operators import Operators
from eventcron.ledger.plans import Plans
from eventcron.ledger.queue import Queue
from eventcron.ledger.retention import Retention
from eventcron.ledger.sends import Sends


class Ledger(Occurrences, Queue, Operators, Retention, Plans, History, Sends):
    """Access to one ledger database.

    Open one with :meth:`Ledger.open`; its methods are synchronous (the daemon runs them
    on a :class:`LedgerThread`). All times are integers: milliseconds since the Unix epoch,
    UTC.
    """
