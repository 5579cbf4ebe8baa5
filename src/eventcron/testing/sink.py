"""The sink's server: listening, outages, connections, and one request at a time.

``Sink`` reads each request off the connection and decides its answer in this order: HTTP
framing (400, 411, 413, 431, 505; the connection is closed afterwards), then the contract
(404, 405, 415, 401, 400; see :mod:`eventcron.testing.checks`), then faults (``fail_keys``,
``fail_first``, ``fail_rate``, ``throttle_rate``, ``latency``; see
:mod:`eventcron.testing.faults`), then 200. Faults only ever touch requests that passed the
contract, so a malformed request is always a 400. The one exception is ``reject_token``: a
revoked token is an authorization failure, so it is checked with the Authorization header (a
401 even when the body is malformed too). Touches its listening socket, its connections and
its record file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from eventcron.testing.answers import CONTINUE, Answer, Responder, close
from eventcron.testing.checks import check_request
from eventcron.testing.faults import FaultInjector, Faults
from eventcron.testing.records import Received, RecordFile
from eventcron.testing.tokens import check_secret
from eventcron.testing.wire import (
    MAX_HEADER_BYTES,
    FramingError,
    Head,
    content_length,
    keep_alive,
    parse_head,
)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PATH: Final = "/api/v1/webhook/event"
IDLE_TIMEOUT: Final = 30.0  # seconds to wait for a request (head or body) on a connection
REBIND_TIMEOUT: Final = 5.0  # seconds spent retrying to listen again after an outage
REBIND_INTERVAL: Final = 0.05  # seconds between those attempts
POLL_INTERVAL: Final = 0.01  # seconds between checks in wait_for

_log = logging.getLogger(__name__)


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
            check_secret(secret)
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
        self._record_file: RecordFile | None = None
        self._injector = FaultInjector(self.faults)
        self._responder = Responder()

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
            await close(writer)

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; return whether to keep the connection open."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            message = f"the request header section is larger than {MAX_HEADER_BYTES} bytes"
            await self._responder.refuse(reader, writer, 431, message)
            return False
        except (asyncio.IncompleteReadError, TimeoutError):
            return False
        # RFC 9112 §2.2: ignore empty lines received before a request line.
        raw = raw.lstrip(b"\r\n")
        if not raw:
            return True
        try:
            head = parse_head(raw)
        except FramingError as error:
            await self._responder.refuse(reader, writer, error.status, error.message)
            return False
        try:
            length = content_length(head.headers)
        except FramingError as error:
            self._record(head, error.status, None)
            await self._responder.refuse(reader, writer, error.status, error.message)
            return False
        if length and head.headers.get("expect", "").lower() == "100-continue":
            writer.write(CONTINUE)
        async with asyncio.timeout(self.idle_timeout):
            body = await reader.readexactly(length)
        keep = keep_alive(head)
        answer, event = self._judge(head, body)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        self._record(head, answer.status, event)
        if answer.mode != "normal":
            await self._responder.misbehave(answer.mode, writer)
            return False
        writer.write(self._responder.render(answer, close=not keep, body=head.method != "HEAD"))
        await writer.drain()
        return keep

    # -- decisions -----------------------------------------------------------------------------

    def _judge(self, head: Head, body: bytes) -> tuple[Answer, Any]:
        """Return the answer to a framed request and its parsed body (for the record)."""
        faults = self.faults
        refusal, event = check_request(head, body, path=self.path, secret=self.secret,
                                       reject_token=faults.reject_token)
        if refusal is not None:
            return refusal, event
        return self._injector.answer(faults, event["app_user_id"]), event

    # -- records -------------------------------------------------------------------------------

    def _record(self, head: Head, status: int, event: Any) -> None:
        record = Received.of_request(head, status, event, time.time())
        self.records.append(record)
        if self._record_file is not None:
            self._record_file.write(record)
        if self.on_request is not None:
            self.on_request(record)

    def _open_record_file(self) -> None:
        if self.record_path is not None:
            self._record_file = RecordFile(self.record_path)

    def _close_record_file(self) -> None:
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None
