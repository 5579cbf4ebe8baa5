"""Prometheus metrics and a health endpoint, on an opt-in listener (127.0.0.1 by default).

``GET /metrics`` is the Prometheus text format; ``GET /healthz`` answers 200 while the
scheduler and the dispatcher are alive and the ledger takes writes, 503 (with the reason)
otherwise. Answering at all proves the event loop is not stalled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger("eventcron.metrics")

REQUEST_TIMEOUT: Final = 5.0  # seconds a scraper may take to send its request
MAX_REQUEST_BYTES: Final = 8192  # bytes of request head read before giving up
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# held: paused by a 401; suppressed: never sent (opted out, a per-user skip or cap);
# quiet: held by quiet hours until the window's end (no attempt spent).
OUTCOMES: Final = ("delivered", "retry", "failed", "expired", "held", "suppressed", "quiet")
# Seconds from an event's nominal time to its delivery: from on time to the longest
# delivery.expires_after worth having; 60 is a bound so that "within a minute" can be read.
LATENESS_BUCKETS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                           3600.0, 7200.0, 21600.0, 86400.0)


class Metrics:
    """Every metric eventcron exports, in a registry of its own.

    The per-request figures (outcomes, attempts, latency) are plain counters updated on the
    event loop and read by a collector at scrape time: prometheus_client's own metrics take
    a lock on every update, which costs more than the rest of the bookkeeping of a request.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.results: dict[str, int] = dict.fromkeys(("2xx", "3xx", "4xx", "5xx", "error"), 0)
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.latency_sum = 0.0
        # Delivery lateness, first attempts and retries apart: [first, retry].
        self.lateness_buckets = ([0] * (len(LATENESS_BUCKETS) + 1),
                                 [0] * (len(LATENESS_BUCKETS) + 1))
        self.lateness_sum = [0.0, 0.0]
        self.in_flight = 0
        r.register(_HotPath(self))
        self.rows = Gauge("eventcron_ledger_rows", "Ledger rows by state.", ["state"],
                          registry=r)
        self.next_fire = Gauge("eventcron_next_fire_timestamp_seconds",
                               "Next nominal fire time of each schedule, the soonest of its"
                               " zones (Unix time); absent when it fires no more.",
                               ["schedule"], registry=r)
        self._next_fire_series: set[str] = set()
        self.last_fire_gauge = Gauge("eventcron_last_fire_timestamp_seconds",
                                     "Nominal time of the latest occurrence each schedule"
                                     " fired (Unix time).", ["schedule"], registry=r)
        self._last_fires: dict[str, float] = {}
        self.token_expiry = Gauge("eventcron_token_expiry_timestamp_seconds",
                                  "When the API token expires (Unix time; 0 if never).",
                                  registry=r)
        self.fires = Counter("eventcron_fires", "Occurrences fired.", registry=r)
        self.enqueued = Counter("eventcron_events_enqueued", "Ledger rows created by fires.",
                                registry=r)
        self.reloads = Counter("eventcron_reloads", "Reloads applied.", registry=r)
        self.reload_failures = Counter("eventcron_reload_failures",
                                       "Reloads refused because the file was invalid.",
                                       registry=r)
        self.paused = Gauge("eventcron_endpoint_paused",
                            "1 while sending is paused by a 401 (token refused).", registry=r)

    def set_next_fires(self, soonest: Mapping[str, float]) -> None:
        """Set each schedule's next fire (Unix time) and drop the series of any other.

        A schedule missing from ``soonest`` left the plan or fires no more (a one-off that
        fired): its series goes, rather than keep showing a time that has passed.
        """
        for schedule in self._next_fire_series - soonest.keys():
            self.next_fire.remove(schedule)
        for schedule, t in soonest.items():
            self.next_fire.labels(schedule).set(t)
        self._next_fire_series = set(soonest)

    def last_fire(self, schedule_id: str, nominal_ts: float) -> None:
        """Record that ``schedule_id`` fired its occurrence of ``nominal_ts`` (Unix time).

        Only a later occurrence moves the gauge: an older one fired after it (a catch-up,
        an interrupted fire finished) does not make the schedule look behind.
        """
        if nominal_ts > self._last_fires.get(schedule_id, float("-inf")):
            self._last_fires[schedule_id] = nominal_ts
            self.last_fire_gauge.labels(schedule_id).set(nominal_ts)

    def delivered(self, lateness: float, first: bool) -> None:
        """Count one delivery, ``lateness`` seconds after its nominal time.

        ``first``: delivered by its first attempt (else by a retry).
        """
        i = 0 if first else 1
        self.lateness_buckets[i][bisect.bisect_left(LATENESS_BUCKETS, lateness)] += 1
        self.lateness_sum[i] += lateness

    def outcome(self, label: str) -> None:
        """Count one outcome (delivered, retry, failed, expired, held, suppressed, quiet)."""
        self.outcomes[label] += 1

    def attempt(self, status_code: int | None, seconds: float) -> None:
        """Count one request and its latency."""
        self.results["error" if status_code is None else f"{status_code // 100}xx"] += 1
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)


class _HotPath(Collector):
    """Exposes the counters :class:`Metrics` keeps without prometheus_client's locks."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.m
        outcomes = CounterMetricFamily(
            "eventcron_deliveries", "Outcomes: delivered, retry (scheduled), failed, expired"
            " (after an attempt or unsent), held (paused by a 401), suppressed (never sent:"
            " opted out or skipped by the campaign rules), quiet (held by quiet hours).",
            labels=["outcome"])
        for label, n in m.outcomes.items():
            outcomes.add_metric([label], n)
        results = CounterMetricFamily(
            "eventcron_attempts", "HTTP requests sent, by status class (2xx, 4xx, 5xx) or"
            " error (no status: connection error or timeout).", labels=["result"])
        for label, n in m.results.items():
            results.add_metric([label], n)
        latency = HistogramMetricFamily(
            "eventcron_request_duration_seconds", "Time from sending a request to its answer.",
            buckets=_cumulative(LATENCY_BUCKETS, m.latency_buckets), sum_value=m.latency_sum)
        lateness = HistogramMetricFamily(
            "eventcron_delivery_lateness_seconds", "Time from an event's nominal time to its"
            " delivery, by the attempt that delivered it (first or retry).",
            labels=["attempt"])
        for i, attempt in enumerate(("first", "retry")):
            lateness.add_metric([attempt], _cumulative(LATENESS_BUCKETS, m.lateness_buckets[i]),
                                m.lateness_sum[i])
        in_flight = GaugeMetricFamily("eventcron_requests_in_flight",
                                      "Requests being sent now.", value=m.in_flight)
        return [outcomes, results, latency, lateness, in_flight]


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> Sequence[tuple[str, float]]:
    """Turn per-bucket counts (the last one +Inf) into Prometheus's cumulative buckets."""
    cumulative, buckets = 0, list[tuple[str, float]]()
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return buckets


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of a health check."""

    ok: bool
    problems: tuple[str, ...] = ()


HealthCheck = Callable[[], Awaitable[Health]]


class ListenError(Exception):
    """The metrics listener could not start; the message says where and why."""


class MetricsServer:
    """A tiny HTTP server for /metrics and /healthz on the daemon's event loop."""

    def __init__(self, metrics: Metrics, health: HealthCheck, host: str, port: int) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start listening; raise :class:`ListenError` with a sentence when it cannot."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as e:
            raise ListenError(f"cannot serve metrics on {self.host}:{self.port}:"
                              f" {e.strerror or e}.") from None
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("metrics on http://%s:%d/metrics, health on /healthz",
                 self.host if ":" not in self.host else f"[{self.host}]", self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            method, path = _request_line(head)
            status, ctype, body = await self._answer(method, path)
            writer.write(_response(status, ctype, body, head_only=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass  # a scraper that hung up or sent junk gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics.render()
        if route == "/healthz":
            health = await self.health()
            body = json.dumps({"ok": health.ok, "problems": list(health.problems)}).encode()
            return (200 if health.ok else 503), "application/json", body + b"\n"
        return 404, "text/plain", b"try /metrics or /healthz\n"


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    return parts[0], parts[1]


_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                   503: "Service Unavailable"}


def _response(status: int, ctype: str, body: bytes, *, head_only: bool) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + body
