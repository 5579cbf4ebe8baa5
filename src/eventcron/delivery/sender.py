"""One HTTP request per event, exactly as the Inbound Events API documents it.

``POST <url>`` with ``Content-Type: application/json``, ``Authorization: Bearer <JWT>`` and
the body ``{"app_user_id", "event_type", "data"}``, plus ``Idempotency-Key: <event_id>``
and ``User-Agent: eventcron/<version>``. The answer is classified by
:mod:`eventcron.delivery.retry`.
Responses are read only as far as needed, so a huge or endless body cannot hold memory
or a connection hostage.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Final

import httpx

from eventcron import __version__
from eventcron.delivery.auth import Token
from eventcron.delivery.retry import Outcome, classify, parse_retry_after
from eventcron.delivery.transport import AiohttpTransport, ConnectFailure, default_ssl_context

USER_AGENT: Final = f"eventcron/{__version__}"
MAX_ERROR_BODY: Final = 512  # bytes of an error response kept for last_error
MAX_READ_BODY: Final = 64 * 1024  # bytes read from any response before dropping the connection
BODY_GRACE: Final = 1.0  # seconds to read a response body once its status is known
CONNECT_TIMEOUT_SHARE: Final = 0.5  # of the request timeout, for connecting


def build_body(app_user_id: str, event_type: str, data_json: str) -> bytes:
    """Return the request body; ``data_json`` is the already-rendered JSON object."""
    return (
        f'{{"app_user_id":{json.dumps(app_user_id, ensure_ascii=False)},'
        f'"event_type":{json.dumps(event_type, ensure_ascii=False)},'
        f'"data":{data_json}}}'
    ).encode()


class Sender:
    """Sends events to one endpoint with one token over a shared connection pool."""

    def __init__(self, url: str, token: Token, *, timeout: float, concurrency: int,
                 transport: httpx.AsyncBaseTransport | None = None,
                 ca_bundle: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self._url = httpx.URL(url)  # parsed once, not per request
        self._token = token
        # Requests go straight to the transport, as httpx.Request objects: the client
        # layer (merging defaults, auth and redirect hooks, cookies) costs more per request
        # than the HTTP exchange itself, and eventcron needs none of it. Redirects are
        # never followed: one would resend the token elsewhere. Verification is always on;
        # a bundle only changes which CAs are trusted.
        self._transport = transport or AiohttpTransport(
            limit=concurrency, verify=default_ssl_context(ca_bundle))
        self._extensions = {"timeout": {"connect": timeout * CONNECT_TIMEOUT_SHARE,
                                        "read": timeout, "write": timeout, "pool": timeout}}
        self._static = [(b"Host", self._url.netloc), (b"Content-Type", b"application/json"),
                        (b"User-Agent", USER_AGENT.encode()), (b"Accept", b"*/*")]

    @property
    def token(self) -> Token:
        """Return the token in use."""
        return self._token

    def set_token(self, token: Token) -> None:
        """Use a new token from the next request on."""
        self._token = token

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    async def send(self, event_id: str, app_user_id: str, event_type: str, data_json: str,
                   now: datetime) -> Outcome:
        """Send one event and classify the answer; never raises for network trouble.

        ``now`` is used to read an HTTP-date ``Retry-After``.
        """
        token = self._token.value
        body = build_body(app_user_id, event_type, data_json)
        headers = [*self._static,
                   (b"Authorization", b"Bearer " + token.encode("ascii")),
                   (b"Idempotency-Key", event_id.encode("ascii")),
                   (b"Content-Length", str(len(body)).encode())]
        request = httpx.Request("POST", self._url, headers=headers, content=body,
                                extensions=self._extensions)
        try:
            # The whole exchange up to the status line is bounded here (httpx's timeouts
            # are per phase). The body comes after, within its own bound: once the status
            # is known, the outcome is, and a slow body must not turn it into a retry.
            async with asyncio.timeout(self.timeout):
                response = await self._transport.handle_async_request(request)
        except TimeoutError:
            return Outcome("retry", error=f"timed out after {self.timeout:g}s")
        except httpx.TimeoutException:
            return Outcome("retry", error=f"timed out after {self.timeout:g}s")
        except httpx.TransportError as e:
            return Outcome("retry", error=_redact(f"{_describe(e)}", token))
        return await self._judge(response, now, token)

    async def _judge(self, r: httpx.Response, now: datetime, token: str) -> Outcome:
        try:
            kind = classify(r.status_code)
            keep = MAX_ERROR_BODY if kind != "delivered" else 0
            text = await _read_some(r, keep)
            retry_after = None
            if r.status_code in (429, 503) or kind == "retry":
                retry_after = parse_retry_after(r.headers.get("retry-after"), now)
            error = None
            if kind != "delivered":
                reason = r.reason_phrase or ""
                # Redact before shortening: a cut could split the token and hide it.
                detail = _redact(" ".join(text.split()), token)[:200]
                error = f"HTTP {r.status_code}" + (f" {reason}" if reason else "")
                if detail:
                    error += f": {detail}"
            return Outcome(kind, r.status_code, error, retry_after)
        finally:
            await r.aclose()


async def _read_some(response: httpx.Response, keep: int) -> str:
    """Read up to MAX_READ_BODY bytes within BODY_GRACE; return the first ``keep`` as text.

    The status is what matters: a body too long or too slow is cut, which only costs the
    connection (it is closed rather than reused), never the outcome.
    """
    kept = bytearray()
    read = 0
    try:
        async with asyncio.timeout(BODY_GRACE):
            async for chunk in response.aiter_raw():
                if len(kept) < keep:
                    kept += chunk[: keep - len(kept)]
                read += len(chunk)
                if read > MAX_READ_BODY:
                    break
    except (TimeoutError, httpx.TransportError):
        pass
    return kept.decode("utf-8", "replace")


def _describe(e: httpx.TransportError) -> str:
    name = type(e).__name__
    text = str(e).strip()
    if isinstance(e, ConnectFailure):
        return text  # already says why: refused, no such host
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect: {text or name}"
    if isinstance(e, httpx.RemoteProtocolError):
        return f"the server broke the protocol: {text or name}"
    return f"connection error ({name}): {text or 'no detail'}"


def _redact(text: str, token: str) -> str:
    # A receiver may echo headers back; the token must not reach the ledger or logs.
    return text.replace(token, "<redacted>") if token else text
