"""A local receiver that speaks the Inbound Events API as a strict server would.

Used by ``eventcron sink``, ``eventcron demo`` and every test that needs an endpoint. It is a
small HTTP/1.1 server on asyncio streams: it checks each request against the API contract,
answers as the real API would, records what it received, and injects faults (failures,
throttling, latency, outages, revoked tokens) deterministically from a seed.

Order of decisions for one request: HTTP framing (400, 411, 413, 431, 505; the connection is
closed afterwards), then the contract (404, 405, 415, 401, 400), then faults (``fail_keys``,
``fail_first``, ``fail_rate``, ``throttle_rate``, ``latency``), then 200. Faults only ever
touch requests that passed the contract, so a malformed request is always a 400. The one
exception is ``reject_token``: a revoked token is an authorization failure, so it is checked
with the Authorization header (a 401 even when the body is malformed too).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import hmac
import json
import logging
import math
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TextIO, TypeVar
from urllib.parse import urlsplit

import jwt

from eventcron import __version__

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PATH: Final = "/api/v1/webhook/event"
MAX_HEADER_BYTES: Final = 16 * 1024  # bytes: request line plus header fields
MAX_HEADER_COUNT: Final = 100  # header fields per request
MAX_BODY_BYTES: Final = 1024 * 1024  # bytes of Content-Length
MAX_CONTENT_LENGTH_DIGITS: Final = 12  # digits; int() refuses very long digit strings
IDLE_TIMEOUT: Final = 30.0  # seconds to wait for a request (head or body) on a connection
LINGER_TIMEOUT: Final = 2.0  # seconds spent discarding unread input before closing
LINGER_MAX_BYTES: Final = 16 * 1024 * 1024  # bytes discarded at most before closing
CLOSE_TIMEOUT: Final = 2.0  # seconds to wait for a closing connection to flush
REBIND_TIMEOUT: Final = 5.0  # seconds spent retrying to listen again after an outage
REBIND_INTERVAL: Final = 0.05  # seconds between those attempts
POLL_INTERVAL: Final = 0.01  # seconds between checks in wait_for
THREAD_TIMEOUT: Final = 10.0  # seconds SinkThread waits for the sink to start or stop
READ_CHUNK: Final = 64 * 1024  # bytes per read while discarding input
MIN_SECRET_BYTES: Final = 32  # bytes; RFC 7518 §3.2: an HS256 key is at least the hash size
MAX_QUOTED_CHARS: Final = 60  # characters of client-supplied names echoed in errors
EVENT_FIELDS: Final = ("app_user_id", "event_type", "data")
REDACTED_BEARER: Final = "Bearer <redacted>"
REDACTED: Final = "<redacted>"
SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_VERSION_RE: Final = re.compile(r"HTTP/([0-9])\.([0-9])")
_BEARER_RE: Final = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")  # RFC 6750 b64token
_CTL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_OK_BODY: Final = b'{"status": "ok"}'
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
HUGE_BODY_BYTES: Final = 10 * 1024 * 1024  # bytes of a "huge" answer
ENDLESS_TRICKLE: Final = 0.1  # seconds between the bytes of an "endless" answer
_FIXED_HEADERS: Final = (
    f"Server: eventcron-sink/{__version__}\r\nContent-Type: application/json\r\n"
)


@dataclass
class Faults:
    """Fault injection settings; read for every request, so tests may change them at runtime.

    Rates are shares in [0, 1]; durations are seconds. The random draws come from
    ``random.Random(seed)``, one draw per valid request, so the number of injected failures
    over the same number of requests is the same on every run. Assigning a new ``Faults`` to
    ``Sink.faults`` restarts the random sequence and the ``fail_first`` budget. The outage
    settings (``down_after``, ``down_for``, ``down_every``) are read when the sink starts.
    """

    fail_rate: float = 0.0
    reset_rate: float = 0.0  # share of requests answered by dropping the connection
    garbage_rate: float = 0.0  # share answered with bytes that are not HTTP
    huge_rate: float = 0.0  # share answered 200 with a 10 MB body (the event is accepted)
    endless_rate: float = 0.0  # share answered 200 with a body that never ends (accepted)
    fail_status: int = 503
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    down_after: float | None = None
    down_for: float = 0.0
    down_every: float | None = None
    fail_first: int = 0
    fail_keys: dict[str, int] = field(default_factory=dict)
    reject_token: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that makes no sense."""
        rates = (("fail_rate", self.fail_rate), ("throttle_rate", self.throttle_rate),
                 ("reset_rate", self.reset_rate), ("garbage_rate", self.garbage_rate),
                 ("huge_rate", self.huge_rate), ("endless_rate", self.endless_rate))
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if sum(rate for _, rate in rates) > 1.0:
            raise ValueError("the fault rates together must not exceed 1")
        for name, value in (("retry_after", self.retry_after), ("latency", self.latency),
                            ("down_for", self.down_for), ("fail_first", self.fail_first)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        if self.down_after is not None and self.down_after < 0:
            raise ValueError(f"down_after must not be negative, not {self.down_after}")
        if self.down_every is not None:
            if self.down_after is None:
                raise ValueError("down_every needs down_after")
            if self.down_every <= self.down_for:
                raise ValueError("down_every must be longer than down_for")
        statuses = [("fail_status", self.fail_status)]
        statuses += [(f"fail_keys[{user!r}]", status) for user, status in self.fail_keys.items()]
        for name, status in statuses:
            if not 200 <= status <= 599:
                raise ValueError(f"{name} must be an HTTP status from 200 to 599, not {status}")


@dataclass(frozen=True, slots=True)
class Received:
    """One request the sink answered, as recorded (the token is never kept)."""

    received_at: float  # epoch seconds
    method: str
    path: str
    status: int
    app_user_id: str | None
    event_type: str | None
    data: dict[str, Any] | None
    idempotency_key: str | None
    user_agent: str | None
    headers: dict[str, str]  # lower-cased names; secrets redacted

    def to_json(self) -> dict[str, Any]:
        """Return the record as a JSON-compatible dict (one line of the record file)."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Received:
        """Rebuild a record from one line of the record file."""
        return cls(**value)


def load_records(path: Path) -> list[Received]:
    """Read a record file written by a sink (it may still be running)."""
    with path.open(encoding="utf-8") as lines:
        return [Received.from_json(json.loads(line)) for line in lines if line.endswith("\n")]


def format_record(record: Received) -> str:
    """Return the one-line summary ``serve`` logs, e.g. ``200 POST u_1 reminder:x key=k``."""
    if record.app_user_id is None and record.event_type is None:
        return f"{record.status} {_printable(record.method)} {_printable(record.path)}"
    return (f"{record.status} {_printable(record.method)} {_printable(record.app_user_id)}"
            f" {_printable(record.event_type)} key={_printable(record.idempotency_key)}")


def make_token(secret: str, *, expires_in: float = 3600.0, now: float,
               claims: dict[str, Any] | None = None) -> str:
    """Return an HS256 JWT with ``iat`` = now and ``exp`` = now + expires_in (epoch seconds).

    ``claims`` are added to (and may override) ``iat`` and ``exp``; a negative
    ``expires_in`` makes an already expired token.
    """
    _check_secret(secret)
    payload: dict[str, Any] = {"iat": int(now), "exp": int(now + expires_in)}
    payload.update(claims or {})
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass(slots=True)
class _Head:
    method: str
    path: str
    version: tuple[int, int]
    headers: dict[str, str]


@dataclass(slots=True)
class _Answer:
    status: int
    error: str | None = None  # None: success body
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering
    mode: str = "normal"  # or: reset, garbage, huge, endless


class _FramingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _BadJsonError(ValueError):
    pass


class Sink:
    """An Inbound Events API endpoint on loopback that records what it receives.

    Every request whose head could be parsed is appended to ``records`` before it is
    answered, with ``status`` set to the answer. A request in flight when an outage or
    ``stop`` drops its connection is not answered and not recorded.
    """

    def __init__(self, *, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                 secret: str | None = None, record_path: Path | None = None,
                 faults: Faults | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 on_request: Callable[[Received], None] | None = None) -> None:
        if secret is not None:
            _check_secret(secret)
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        self.host = host
        self.port = port
        self.path = path
        self.secret = secret
        self.record_path = record_path
        self.faults = faults if faults is not None else Faults()
        self.idle_timeout = idle_timeout
        self.on_request = on_request
        self.records: list[Received] = []
        self.connections = 0  # connections accepted so far
        self.outages = 0  # times the sink stopped listening because of a fault
        self._server: asyncio.Server | None = None
        self._listening = False  # public view: true only while fully up
        self._accepting = False  # internal: new connections are served
        self._started = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outage_task: asyncio.Task[None] | None = None
        self._record_file: TextIO | None = None
        self._rng = random.Random(self.faults.seed)
        self._rng_faults: Faults = self.faults
        self._rng_seed = self.faults.seed
        self._failed_first = 0
        self._date_second = -1
        self._date = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; with ``port`` 0 the system picks a free port, kept until ``stop``."""
        if self._started:
            raise RuntimeError("the sink is already started")
        self.faults.validate()
        self._open_record_file()
        self._accepting = True
        try:
            self._server = await self._listen(self.port)
        except BaseException:
            self._accepting = False
            self._close_record_file()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started = True
        self._listening = True
        faults = self.faults
        if faults.down_after is not None:
            self._outage_task = asyncio.create_task(self._outage_cycle(faults))

    async def stop(self) -> None:
        """Stop listening, drop every connection and close the record file; idempotent."""
        if self._outage_task is not None:
            self._outage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._outage_task
            self._outage_task = None
        await self._close_listener()
        await self._drop_connections()
        self._close_record_file()
        self._started = False

    async def go_down(self) -> None:
        """Simulate an outage now: stop listening and reset every open connection."""
        if not self._listening:
            return
        self.outages += 1
        await self._close_listener()

    async def come_up(self) -> None:
        """End an outage: listen again on the same port."""
        if self._listening or not self._started:
            return
        deadline = time.monotonic() + REBIND_TIMEOUT
        self._accepting = True
        while True:
            try:
                self._server = await self._listen(self.port)
                break
            except OSError:
                # The port may linger briefly, or another process may have taken it.
                if time.monotonic() >= deadline:
                    self._accepting = False
                    raise
                await asyncio.sleep(REBIND_INTERVAL)
        self._listening = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- observation ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ``http://127.0.0.1:8080/api/v1/webhook/event``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    @property
    def listening(self) -> bool:
        """Whether the sink accepts connections (false before start and during an outage)."""
        return self._listening

    def set_reject_token(self, token: str | None) -> None:
        """Answer 401 to requests bearing exactly ``token`` (None: accept every token again)."""
        self.faults.reject_token = token

    def delivered(self) -> list[Received]:
        """Return the records answered 200."""
        return [record for record in self.records if record.status == HTTPStatus.OK]

    def delivered_keys(self) -> Counter[str]:
        """Count the Idempotency-Key values among the records answered 200."""
        return Counter(record.idempotency_key for record in self.delivered()
                       if record.idempotency_key is not None)

    def duplicates(self) -> dict[str, int]:
        """Return the Idempotency-Key values answered 200 more than once, with their counts."""
        return {key: n for key, n in self.delivered_keys().items() if n > 1}

    def count(self, status: int) -> int:
        """Return how many requests were answered with ``status``."""
        return sum(1 for record in self.records if record.status == status)

    # The timeout argument is part of the documented helper API that tests call.
    async def wait_for(
        self, predicate: Callable[[Sink], bool], timeout: float,  # noqa: ASYNC109
    ) -> bool:
        """Poll ``predicate(self)`` until it is true (return True) or ``timeout`` s pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL)
        return True

    # -- listening -----------------------------------------------------------------------------

    async def _listen(self, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._on_connection, self.host, port,
                                          limit=MAX_HEADER_BYTES, reuse_address=True)

    async def _close_listener(self) -> None:
        self._accepting = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Closing the listening socket leaves accepted connections alone; drop them first
            # so wait_closed (which waits for them on Python 3.12+) returns.
            await self._drop_connections()
            await server.wait_closed()
        # Only now, so that whoever sees `listening` false finds every connection gone.
        self._listening = False

    async def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _outage_cycle(self, faults: Faults) -> None:
        assert faults.down_after is not None
        loop = asyncio.get_running_loop()
        down_at = loop.time() + faults.down_after
        while True:
            await asyncio.sleep(max(0.0, down_at - loop.time()))
            await self.go_down()
            await asyncio.sleep(faults.down_for)
            await self.come_up()
            if faults.down_every is None:
                return
            down_at += faults.down_every

    # -- connections ---------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        # Cancelled by an outage or stop. Ending cancelled would make asyncio 3.11 log an
        # error from the callback it attaches to this task, so end normally instead.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_connection(reader, writer)

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            # Accepted just before the listener closed: the outage applies to it too.
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled: there is no one to answer
        except Exception:  # noqa: BLE001 - a bug here must be logged, not lost with the task
            _log.exception("eventcron sink: unexpected error while serving a connection")
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            await _close(writer)

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; return whether to keep the connection open."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            message = f"the request header section is larger than {MAX_HEADER_BYTES} bytes"
            await self._refuse(reader, writer, 431, message)
            return False
        except (asyncio.IncompleteReadError, TimeoutError):
            return False
        # RFC 9112 §2.2: ignore empty lines received before a request line.
        raw = raw.lstrip(b"\r\n")
        if not raw:
            return True
        try:
            head = _parse_head(raw)
        except _FramingError as error:
            await self._refuse(reader, writer, error.status, error.message)
            return False
        try:
            length = _content_length(head.headers)
        except _FramingError as error:
            self._record(head, error.status, None)
            await self._refuse(reader, writer, error.status, error.message)
            return False
        if length and head.headers.get("expect", "").lower() == "100-continue":
            writer.write(_CONTINUE)
        async with asyncio.timeout(self.idle_timeout):
            body = await reader.readexactly(length)
        keep_alive = head.version == (1, 1) and "close" not in _tokens(head.headers, "connection")
        answer, event = self._judge(head, body)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        self._record(head, answer.status, event)
        if answer.mode != "normal":
            await self._misbehave(answer.mode, writer)
            return False
        writer.write(self._response(answer, close=not keep_alive, body=head.method != "HEAD"))
        await writer.drain()
        return keep_alive

    async def _misbehave(self, mode: str, writer: asyncio.StreamWriter) -> None:
        """Answer as a broken server would (status 0 in the records: no valid answer)."""
        if mode == "reset":
            writer.transport.abort()  # RST, not FIN: the client sees a reset connection
            return
        if mode == "garbage":
            writer.write(b"HTTP/1.1 2OO banana\r\n\x00\xff\xfe" + bytes(range(256)) * 4)
            await writer.drain()
            return
        head = (f"HTTP/1.1 200 OK\r\nDate: {email.utils.formatdate(usegmt=True)}\r\n"
                + _FIXED_HEADERS)
        if mode == "huge":
            writer.write(f"{head}Content-Length: {HUGE_BODY_BYTES}\r\n\r\n".encode())
            chunk = b"x" * 65536
            for _ in range(HUGE_BODY_BYTES // len(chunk)):
                writer.write(chunk)
                await writer.drain()  # the client may stop reading and close: that ends it
            return
        writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        while True:  # until the client gives up (or the sink stops)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(ENDLESS_TRICKLE)

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      status: int, message: str) -> None:
        """Answer a request whose input we will not read, then close gracefully."""
        writer.write(self._response(_Answer(status, message), close=True, body=True))
        await writer.drain()
        # Closing with unread input makes the kernel send a reset, which can destroy the
        # answer before the client reads it: half-close and discard input for a while first.
        if writer.can_write_eof():
            writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_TIMEOUT):
                while discarded < LINGER_MAX_BYTES:
                    chunk = await reader.read(READ_CHUNK)
                    if not chunk:
                        break
                    discarded += len(chunk)

    # -- decisions -----------------------------------------------------------------------------

    def _judge(self, head: _Head, body: bytes) -> tuple[_Answer, Any]:
        """Return the answer to a framed request and its parsed body (for the record)."""
        event, body_error = _parse_body(body)
        if head.path != self.path:
            message = f"there is no endpoint here; events are posted to {self.path}"
            return _Answer(404, message), event
        if head.method != "POST":
            message = f"method {_quote(head.method)} is not allowed; use POST"
            return _Answer(405, message, (("Allow", "POST"),)), event
        media_type = head.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return _Answer(415, "the Content-Type must be application/json"), event
        auth_error = self._check_authorization(head.headers.get("authorization"))
        if auth_error is not None:
            return auth_error, event
        if body_error is None:
            body_error = _check_event(event)
        if body_error is not None:
            return _Answer(400, body_error), event
        return self._inject_fault(event["app_user_id"]), event

    def _check_authorization(self, value: str | None) -> _Answer | None:
        challenge = (("WWW-Authenticate", "Bearer"),)
        if value is None:
            return _Answer(401, "the Authorization header is missing", challenge)
        match = _BEARER_RE.fullmatch(value.strip())
        if match is None:
            return _Answer(401, "the Authorization header must be 'Bearer <token>'", challenge)
        token = match.group(1)
        invalid = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
        if self.secret is not None:
            reason = _token_problem(token, self.secret)
            if reason is not None:
                return _Answer(401, reason, invalid)
        rejected = self.faults.reject_token
        if rejected is not None and hmac.compare_digest(token.encode(), rejected.encode()):
            return _Answer(401, "the token has been revoked", invalid)
        return None

    def _inject_fault(self, app_user_id: str) -> _Answer:
        faults = self.faults
        if faults is not self._rng_faults or faults.seed != self._rng_seed:
            self._rng = random.Random(faults.seed)
            self._rng_faults, self._rng_seed = faults, faults.seed
            self._failed_first = 0
        # Exactly one draw per valid request, whatever else applies: the number of draws
        # below each threshold then depends only on how many requests came, not their order.
        draw = self._rng.random()
        delay = faults.latency
        status = faults.fail_keys.get(app_user_id)
        if status is not None:
            message = f"failure injected for app_user_id {_quote(app_user_id)}"
            return _Answer(status, message if status >= 300 else None, _extra(status, faults),
                           delay)
        if self._failed_first < faults.fail_first:
            self._failed_first += 1
            return _Answer(faults.fail_status, "failure injected (fail_first)",
                           _extra(faults.fail_status, faults), delay)
        if draw < faults.fail_rate:
            return _Answer(faults.fail_status, "failure injected (fail_rate)",
                           _extra(faults.fail_status, faults), delay)
        if draw < faults.fail_rate + faults.throttle_rate:
            message = f"too many requests; retry after {_retry_after(faults)} seconds"
            return _Answer(429, message, _extra(429, faults), delay)
        edge = faults.fail_rate + faults.throttle_rate
        for mode, rate, status in (("reset", faults.reset_rate, 0),
                                   ("garbage", faults.garbage_rate, 0),
                                   ("huge", faults.huge_rate, 200),
                                   ("endless", faults.endless_rate, 200)):
            edge += rate
            if draw < edge:
                return _Answer(status, None, (), delay, mode)
        return _Answer(200, None, (), delay)

    # -- output --------------------------------------------------------------------------------

    def _record(self, head: _Head, status: int, event: Any) -> None:
        fields: dict[str, Any] = event if isinstance(event, dict) else {}
        user, kind, data = (fields.get(name) for name in EVENT_FIELDS)
        record = Received(
            received_at=time.time(),
            method=head.method,
            path=head.path,
            status=status,
            app_user_id=user if isinstance(user, str) else None,
            event_type=kind if isinstance(kind, str) else None,
            data=data if isinstance(data, dict) else None,
            idempotency_key=head.headers.get("idempotency-key"),
            user_agent=head.headers.get("user-agent"),
            headers={name: _redact(name, value) for name, value in head.headers.items()},
        )
        self.records.append(record)
        if self._record_file is not None:
            self._record_file.write(json.dumps(record.to_json()) + "\n")
            self._record_file.flush()
        if self.on_request is not None:
            self.on_request(record)

    def _response(self, answer: _Answer, *, close: bool, body: bool) -> bytes:
        error = answer.error
        payload = _OK_BODY if error is None else json.dumps({"error": error}).encode()
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date = now, email.utils.formatdate(now, usegmt=True)
        lines = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}\r\nDate: {self._date}\r\n",
                 _FIXED_HEADERS, f"Content-Length: {len(payload)}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in answer.headers]
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        return head + payload if body else head

    def _open_record_file(self) -> None:
        if self.record_path is not None:
            # Appended, never truncated: an earlier run's records are not ours to destroy.
            self._record_file = self.record_path.open("a", encoding="utf-8")

    def _close_record_file(self) -> None:
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None


class SinkThread:
    """A Sink running in its own thread and event loop, for synchronous code and tests."""

    def __init__(self, *, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                 secret: str | None = None, record_path: Path | None = None,
                 faults: Faults | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 on_request: Callable[[Received], None] | None = None) -> None:
        self.sink = Sink(host=host, port=port, path=path, secret=secret,
                         record_path=record_path, faults=faults, idle_timeout=idle_timeout,
                         on_request=on_request)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SinkThread:
        """Start the sink; return once it is listening (its error is raised here)."""
        if self._loop is not None:
            raise RuntimeError("the sink thread is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="eventcron-sink",
                                  daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self.call(self.sink.start())
        except BaseException:
            self._end_loop()
            raise
        return self

    def stop(self) -> None:
        """Stop the sink and its thread; idempotent."""
        if self._loop is None:
            return
        try:
            self.call(self.sink.stop())
        finally:
            self._end_loop()

    def call(self, coroutine: Coroutine[Any, Any, _T], timeout: float = THREAD_TIMEOUT) -> _T:
        """Run ``coroutine`` on the sink's loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the sink thread is not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def go_down(self) -> None:
        """Simulate an outage now (see ``Sink.go_down``)."""
        self.call(self.sink.go_down())

    def come_up(self) -> None:
        """End an outage (see ``Sink.come_up``)."""
        self.call(self.sink.come_up())

    def wait_for(self, predicate: Callable[[Sink], bool], timeout: float) -> bool:
        """Poll ``predicate(sink)`` until true (return True) or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not predicate(self.sink):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def set_reject_token(self, token: str | None) -> None:
        """Answer 401 to requests bearing exactly ``token`` (None: stop rejecting)."""
        self.sink.set_reject_token(token)

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return self.sink.url

    @property
    def port(self) -> int:
        """The port the sink listens on."""
        return self.sink.port

    @property
    def records(self) -> list[Received]:
        """The sink's records (appended by the sink's thread)."""
        return self.sink.records

    @property
    def faults(self) -> Faults:
        """The sink's fault settings."""
        return self.sink.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.sink.faults = faults

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _end_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(THREAD_TIMEOUT)


async def serve(*, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                secret: str | None = None, record_path: Path | None = None,
                faults: Faults | None = None, stdout: TextIO | None = None,
                stderr: TextIO | None = None, stop: asyncio.Event | None = None) -> int:
    """Run a sink until SIGINT/SIGTERM (or ``stop`` is set); return the exit code.

    Prints ``eventcron sink listening on <url>`` to stdout once listening and one line per
    request to stderr. Returns 0 after a clean stop, 1 if it cannot listen or write the
    record file, or a setting is invalid (e.g. a secret shorter than 32 bytes). Cancellation
    stops the sink cleanly and propagates.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    stop_event = stop if stop is not None else asyncio.Event()

    def log(record: Received) -> None:
        err.write(format_record(record) + "\n")
        err.flush()

    try:
        sink = Sink(host=host, port=port, path=path, secret=secret, record_path=record_path,
                    faults=faults, on_request=log)
    except ValueError as error:
        err.write(f"eventcron sink: {error}\n")
        err.flush()
        return 1
    try:
        await sink.start()
    except OSError as error:
        what = f"write {error.filename}" if error.filename else f"listen on {host}:{port}"
        err.write(f"eventcron sink: cannot {what}: {error.strerror or error}\n")
        err.flush()
        return 1
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop_event.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: whoever runs us decides when to stop
    try:
        out.write(f"eventcron sink listening on {sink.url}\n")
        out.flush()
        await stop_event.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await sink.stop()
    return 0


# -- helpers -----------------------------------------------------------------------------------


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long")


def _parse_head(raw: bytes) -> _Head:
    """Parse a request line and header fields ending with an empty line (strict RFC 9112)."""
    lines = raw.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[1] \
            or _CTL_RE.search(parts[1]):
        raise _FramingError(400, "the request line must be 'METHOD target HTTP/1.1'")
    method, target, version_text = parts
    version = _VERSION_RE.fullmatch(version_text)
    if version is None:
        raise _FramingError(400, "the request line must end with an HTTP version")
    major, minor = int(version.group(1)), int(version.group(2))
    if major != 1:
        raise _FramingError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise _FramingError(431, f"a request may have at most {MAX_HEADER_COUNT} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # A leading space (obsolete line folding) or a space before the colon fails here.
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise _FramingError(400, "a header line is malformed")
        value = value.strip(" \t")
        if _CTL_RE.search(value):
            raise _FramingError(400, f"the {_quote(name)} header has control characters")
        key = name.lower()
        if key in headers:
            if key == "host":
                raise _FramingError(400, "the request has more than one Host header")
            headers[key] += ", " + value
        else:
            headers[key] = value
    if (major, minor) >= (1, 1) and "host" not in headers:
        raise _FramingError(400, "an HTTP/1.1 request must have a Host header")
    if target.startswith("/"):
        path = target.partition("?")[0]
    elif "://" in target:
        path = urlsplit(target).path or "/"
    else:
        path = target
    return _Head(method, path, (major, min(minor, 1)), headers)


def _content_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _FramingError(411, "Transfer-Encoding is not supported; send a Content-Length")
    raw = headers.get("content-length")
    if raw is None:
        return 0
    values = {value.strip() for value in raw.split(",")}
    text = values.pop()
    if values or not _DIGITS_RE.fullmatch(text):
        raise _FramingError(400, "the Content-Length must be one non-negative integer")
    if len(text) > MAX_CONTENT_LENGTH_DIGITS or int(text) > MAX_BODY_BYTES:
        raise _FramingError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    return int(text)


def _tokens(headers: dict[str, str], name: str) -> set[str]:
    return {token.strip().lower() for token in headers.get(name, "").split(",")}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadJsonError(f"the request body has a duplicate key {_quote(key)}")
            seen.add(key)
    return result


def _no_constants(name: str) -> Any:
    raise _BadJsonError(f"the request body is not valid JSON ({name} is not a JSON value)")


def _parse_body(body: bytes) -> tuple[Any, str | None]:
    """Return the parsed body, or None and a sentence saying why it is not JSON."""
    if not body:
        return None, "the request body is empty; send a JSON object"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the request body is not valid UTF-8"
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants), None
    except _BadJsonError as error:
        return None, str(error)
    except json.JSONDecodeError as error:
        return None, (f"the request body is not valid JSON ({error.msg} at line {error.lineno}"
                      f" column {error.colno})")
    except RecursionError:
        return None, "the request body is nested too deeply"


def _check_event(event: Any) -> str | None:
    """Return a sentence naming what is wrong with a parsed body, or None if it is valid."""
    if not isinstance(event, dict):
        return f"the request body must be a JSON object, not {_json_type(event)}"
    missing = [name for name in EVENT_FIELDS if name not in event]
    if missing:
        return f"the field {_quote(missing[0])} is missing"
    extra = sorted(set(event) - set(EVENT_FIELDS))
    if extra:
        return (f"the field {_quote(extra[0])} is not allowed; the body has exactly"
                " app_user_id, event_type and data")
    for name in ("app_user_id", "event_type"):
        value = event[name]
        if not isinstance(value, str):
            return f"the field {_quote(name)} must be a string, not {_json_type(value)}"
        if not value:
            return f"the field {_quote(name)} must not be empty"
    if not isinstance(event["data"], dict):
        return f"the field 'data' must be a JSON object, not {_json_type(event['data'])}"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _token_problem(token: str, secret: str) -> str | None:
    """Return why ``token`` is not acceptable (never quoting it), or None."""
    try:
        jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.ExpiredSignatureError:
        return "the token has expired"
    except jwt.InvalidSignatureError:
        return "the token has a bad signature"
    except jwt.InvalidAlgorithmError:
        return "the token is not signed with HS256"
    except jwt.ImmatureSignatureError:
        return "the token is not valid yet"
    except jwt.DecodeError:
        return "the token is malformed"
    except jwt.InvalidTokenError:
        return "the token has invalid claims"
    return None


def _retry_after(faults: Faults) -> int:
    # Retry-After is a whole number of seconds (RFC 9110 §10.2.3): round up, never shorten.
    return math.ceil(faults.retry_after)


def _extra(status: int, faults: Faults) -> tuple[tuple[str, str], ...]:
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return (("Retry-After", str(_retry_after(faults))),)
    if status == HTTPStatus.UNAUTHORIZED:
        return (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
    return ()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _redact(name: str, value: str) -> str:
    if name not in SECRET_HEADERS:
        return value
    return REDACTED_BEARER if _BEARER_RE.fullmatch(value.strip()) else REDACTED


def _quote(text: str) -> str:
    """Quote client-supplied text for a message, shortened and without control characters."""
    shown = text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + "…"
    return json.dumps(shown, ensure_ascii=False).replace('"', "'")


def _printable(text: str | None) -> str:
    if text is None:
        return "-"
    if text.isprintable() and " " not in text and len(text) <= MAX_QUOTED_CHARS:
        return text
    return _quote(text)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()  # the peer stopped reading; do not wait for it forever
    except OSError:
        pass  # reset by the peer while closing: it is closed either way
