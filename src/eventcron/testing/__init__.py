"""A local receiver that speaks the Inbound Events API as a strict server would.

Used by ``eventcron sink``, ``eventcron demo`` and every test that needs an endpoint (never
by the daemon). It is a small HTTP/1.1 server on asyncio streams: it checks each request
against the API contract, answers as the real API would, records what it received, and
injects faults (failures, throttling, latency, outages, revoked tokens) deterministically
from a seed.

Modules, in the order a request meets them: :mod:`~eventcron.testing.wire` (request-head
parsing and framing limits), :mod:`~eventcron.testing.checks` (the API contract),
:mod:`~eventcron.testing.tokens` (HS256 tokens), :mod:`~eventcron.testing.faults` (fault
settings and the per-request draw), :mod:`~eventcron.testing.answers` (what is written
back), :mod:`~eventcron.testing.records` (what was received),
:mod:`~eventcron.testing.sink` (the server), :mod:`~eventcron.testing.thread` (the server
in a thread) and :mod:`~eventcron.testing.command` (the ``sink`` command). Callers import
the names below from this package.
"""

from eventcron.testing.command import serve
from eventcron.testing.faults import Faults
from eventcron.testing.records import Received, format_record, load_records
from eventcron.testing.sink import DEFAULT_HOST, DEFAULT_PATH, Sink
from eventcron.testing.thread import SinkThread
from eventcron.testing.tokens import make_token
from eventcron.testing.wire import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_HEADER_COUNT

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PATH",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_COUNT",
    "Faults",
    "Received",
    "Sink",
    "SinkThread",
    "format_record",
    "load_records",
    "make_token",
    "serve",
]
