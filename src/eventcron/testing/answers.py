"""What the sink writes back: answers as a strict server sends them, and as a broken one does.

Holds ``Answer`` (the decision about one request), ``Responder`` (renders answers, refuses
unframeable requests, misbehaves on purpose) and ``close`` for a connection. Touches only
the stream writer (and reader, to discard unread input) it is handed, and the clock for the
Date header.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from eventcron import __version__

LINGER_TIMEOUT: Final = 2.0  # seconds spent discarding unread input before closing
LINGER_MAX_BYTES: Final = 16 * 1024 * 1024  # bytes discarded at most before closing
CLOSE_TIMEOUT: Final = 2.0  # seconds to wait for a closing connection to flush
READ_CHUNK: Final = 64 * 1024  # bytes per read while discarding input
HUGE_BODY_BYTES: Final = 10 * 1024 * 1024  # bytes of a "huge" answer
ENDLESS_TRICKLE: Final = 0.1  # seconds between the bytes of an "endless" answer
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

_OK_BODY: Final = b'{"status": "ok"}'
_FIXED_HEADERS: Final = (
    f"Server: eventcron-sink/{__version__}\r\nContent-Type: application/json\r\n"
)


@dataclass(slots=True)
class Answer:
    """How to answer one request: status, error sentence, extra headers, delay and mode."""

    status: int
    error: str | None = None  # None: success body
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering
    mode: str = "normal"  # or: reset, garbage, huge, endless


class Responder:
    """Writes answers for one sink; keeps the Date header of the current second."""

    def __init__(self) -> None:
        self._date_second = -1
        self._date = ""

    def render(self, answer: Answer, *, close: bool, body: bool) -> bytes:
        """Return the bytes of ``answer`` (head only unless ``body``; ``close`` adds the header)."""
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

    async def refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     status: int, message: str) -> None:
        """Answer a request whose input we will not read, then close gracefully."""
        writer.write(self.render(Answer(status, message), close=True, body=True))
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

    @staticmethod
    async def misbehave(mode: str, writer: asyncio.StreamWriter) -> None:
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


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a connection, aborting it if the peer does not let it flush in time."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()  # the peer stopped reading; do not wait for it forever
    except OSError:
        pass  # reset by the peer while closing: it is closed either way


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
