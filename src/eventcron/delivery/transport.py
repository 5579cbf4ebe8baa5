"""An httpx transport on aiohttp's connection pool.

httpx's API stays the interface (requests, responses, timeouts, exceptions), but its default
transport's pool slows down as concurrency grows; aiohttp's does not. Measured on the
project's 2-core machines, 64 requests in flight against nginx: about 250 requests/s
through httpx's default transport, about ten times that through this one (see bench/).

A server may close an idle connection just as a request is sent on it. Such a request,
failed on a reused connection before any byte of an answer, is sent again at once on a new
connection, once; any other failure is the caller's to retry.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import certifi
import httpx

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.tracing import Trace

# Seconds an idle pooled connection is kept: below what common receivers keep one (gunicorn
# 2 s, uvicorn and Node.js 5 s), with 0.5 s to spare for the answer's way back and a busy
# loop. Busy endpoints never idle that long; quiet ones pay a new connection per send.
KEEPALIVE: Final = 1.5
CHUNK: Final = 64 * 1024  # bytes read per step of a response body

# What a server closing a connection under a request looks like (aiohttp wraps a write
# failure into a ClientOSError whose cause is the reset).
_DROPPED: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_DROPPED_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})

# getaddrinfo's answers that the name does not exist (others: the resolver itself failed).
_NO_SUCH_NAME: Final = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)})

log = logging.getLogger("eventcron.transport")

# Whether the request being sent in this task got a pooled connection: set by
# _Connector.connect, read after a failure (a context variable costs one set per request).
_reused: ContextVar[bool] = ContextVar("eventcron_transport_reused", default=False)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's pool, noting for each request whether its connection served one before."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._served: weakref.WeakSet[ResponseHandler] = weakref.WeakSet()

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
                      ) -> aiohttp.connector.Connection:
        """Get a pooled or new connection, as aiohttp does, and note which it was."""
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        reused = protocol in self._served
        if not reused and protocol is not None:
            self._served.add(protocol)
        _reused.set(reused)
        return conn


def default_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Return a verifying context: the given CA bundle, else certifi's (as httpx uses)."""
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


class ConnectFailure(httpx.ConnectError):
    """Connecting failed; the message is already a sentence, such as ``no such host x``."""


def connect_failure(e: aiohttp.ClientConnectorError) -> str:
    """Say why connecting failed, for a person: ``connection refused by 127.0.0.1:8080``.

    aiohttp's own text (``Cannot connect to host … ssl:default [Connect call failed …]``)
    names its internals, not the cause.
    """
    host = f"[{e.host}]" if ":" in e.host else e.host
    where = f"{host}:{e.port}"
    cause = e.os_error
    if isinstance(e, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        if cause.errno in _NO_SUCH_NAME:
            return f"no such host {e.host}"
        return f"cannot look up host {e.host}: {cause.strerror or cause}"
    if isinstance(cause, ConnectionRefusedError) or cause.errno == errno.ECONNREFUSED:
        return f"connection refused by {where}"
    if isinstance(e, aiohttp.ClientSSLError):
        return f"the TLS handshake with {where} failed: {cause}"
    return f"cannot connect to {where}: {cause.strerror or cause}"


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _mapped(e, self._request) from e

    async def aclose(self) -> None:
        # A body read to the end returns the connection to the pool; otherwise it is closed.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (HTTP/1.1, keep-alive).

    Of httpx's timeouts only ``connect`` is applied; callers bound the whole exchange.
    """

    def __init__(self, *, limit: int, verify: ssl.SSLContext | None = None) -> None:
        self._limit = limit
        self._ssl = verify or default_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # for resends: never pooled

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        if self._session is None:
            self._session = self._new_session(_Connector(
                limit=self._limit, limit_per_host=self._limit, keepalive_timeout=KEEPALIVE,
                ssl=self._ssl))
        return self._session

    def _open_fresh(self) -> aiohttp.ClientSession:
        # A separate pool that never keeps a connection: other pooled ones may be stale too.
        if self._fresh is None:
            self._fresh = self._new_session(aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, force_close=True,
                ssl=self._ssl))
        return self._fresh

    @staticmethod
    def _new_session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     skip_auto_headers=("User-Agent",))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; map aiohttp's errors onto httpx's.

        A request that fails on a reused connection before any byte of an answer (the
        server closed it while idle) is sent again at once, once, on a new connection.
        """
        session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        # Only connecting is timed here. Read, write and pool waits are bounded by the
        # caller's deadline around the whole exchange (Sender.send): one timer per request
        # instead of three, which at thousands of requests a second is measurable.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.get("connect"))
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body = await request.aread()
        _reused.set(False)  # a failure before connecting must not read the last request's
        try:
            response = await session.request(
                request.method, str(request.url), data=body, headers=headers,
                allow_redirects=False, timeout=timeout, compress=None)
        except (TimeoutError, aiohttp.ClientError) as e:
            if not (_reused.get() and _unanswered(e)):
                raise _mapped(e, request) from e
            log.debug("%s %s (key %s) failed on a reused connection before any answer (%s),"
                      " which the server had likely closed as idle; sending it again at once"
                      " on a new connection",
                      request.method, request.url,
                      request.headers.get("idempotency-key", "none"), str(e) or type(e).__name__)
            try:
                response = await self._open_fresh().request(
                    request.method, str(request.url), data=body, headers=headers,
                    allow_redirects=False, timeout=timeout, compress=None)
            except (TimeoutError, aiohttp.ClientError) as again:
                raise _mapped(again, request) from again
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        """Close the sessions and their connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._fresh is not None:
            await self._fresh.close()
            self._fresh = None


def _unanswered(e: BaseException) -> bool:
    """Whether ``e`` is a connection failing after it was made, before any byte of an answer.

    Timeouts are not: the server may be working on the request.
    """
    if isinstance(e, aiohttp.ClientConnectorError):  # failed to connect: nothing was reused
        return False
    if isinstance(e, aiohttp.ServerDisconnectedError):
        # aiohttp attaches the part of an answer it had read; a bare message means none came.
        return isinstance(e.message, str)
    # A reset or broken pipe while sending or awaiting the status line (one arriving
    # after part of a head cannot be told apart: aiohttp drops that part). Other OS errors
    # (ETIMEDOUT, TLS failures) are not the idle close this is for.
    if isinstance(e, aiohttp.ClientOSError | aiohttp.ClientConnectionResetError):
        return (e.errno in _DROPPED_ERRNOS or isinstance(e, _DROPPED)
                or isinstance(e.__cause__, _DROPPED))
    return False


def _mapped(e: BaseException, request: httpx.Request) -> httpx.TransportError:
    text = str(e) or type(e).__name__
    if isinstance(e, aiohttp.ServerDisconnectedError) and not isinstance(e.message, str):
        # The message is then the part of a response aiohttp had parsed: no sentence.
        text = "Server disconnected during its answer"
    if isinstance(e, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        if isinstance(e, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(text, request=request)
        return httpx.ReadTimeout(text, request=request)
    if isinstance(e, aiohttp.ClientConnectorError):
        return ConnectFailure(connect_failure(e), request=request)
    if isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                  | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(e, aiohttp.ClientOSError):
        return httpx.ReadError(text, request=request)
    return httpx.TransportError(text, request=request)
