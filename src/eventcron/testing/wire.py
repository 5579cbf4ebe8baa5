"""HTTP/1.1 request syntax as the sink reads it: head parsing, framing limits, header helpers.

Holds the strict RFC 9112 parser for a request head, the Content-Length rules, the limits
that bound what a client may send, and the helpers that quote client-supplied text and
redact secret headers. Pure functions on bytes and strings: no sockets, no clock, no state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_HEADER_BYTES: Final = 16 * 1024  # bytes: request line plus header fields
MAX_HEADER_COUNT: Final = 100  # header fields per request
MAX_BODY_BYTES: Final = 1024 * 1024  # bytes of Content-Length
MAX_CONTENT_LENGTH_DIGITS: Final = 12  # digits; int() refuses very long digit strings
MAX_QUOTED_CHARS: Final = 60  # characters of client-supplied names echoed in errors
REDACTED_BEARER: Final = "Bearer <redacted>"
REDACTED: Final = "<redacted>"
SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})

BEARER_RE: Final = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")  # RFC 6750 b64token
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_VERSION_RE: Final = re.compile(r"HTTP/([0-9])\.([0-9])")
_CTL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS_RE: Final = re.compile(r"[0-9]+")


@dataclass(slots=True)
class Head:
    """A parsed request head: method, path (no query), version and lower-cased headers."""

    method: str
    path: str
    version: tuple[int, int]
    headers: dict[str, str]


class FramingError(Exception):
    """A request the sink cannot frame: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_head(raw: bytes) -> Head:
    """Parse a request line and header fields ending with an empty line (strict RFC 9112)."""
    lines = raw.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not parts[1] \
            or _CTL_RE.search(parts[1]):
        raise FramingError(400, "the request line must be 'METHOD target HTTP/1.1'")
    method, target, version_text = parts
    version = _VERSION_RE.fullmatch(version_text)
    if version is None:
        raise FramingError(400, "the request line must end with an HTTP version")
    major, minor = int(version.group(1)), int(version.group(2))
    if major != 1:
        raise FramingError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise FramingError(431, f"a request may have at most {MAX_HEADER_COUNT} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # A leading space (obsolete line folding) or a space before the colon fails here.
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise FramingError(400, "a header line is malformed")
        value = value.strip(" \t")
        if _CTL_RE.search(value):
            raise FramingError(400, f"the {quote(name)} header has control characters")
        key = name.lower()
        if key in headers:
            if key == "host":
                raise FramingError(400, "the request has more than one Host header")
            headers[key] += ", " + value
        else:
            headers[key] = value
    if (major, minor) >= (1, 1) and "host" not in headers:
        raise FramingError(400, "an HTTP/1.1 request must have a Host header")
    if target.startswith("/"):
        path = target.partition("?")[0]
    elif "://" in target:
        path = urlsplit(target).path or "/"
    else:
        path = target
    return Head(method, path, (major, min(minor, 1)), headers)


def content_length(headers: dict[str, str]) -> int:
    """Return the body length a request announces (0 if none); raise ``FramingError``."""
    if "transfer-encoding" in headers:
        raise FramingError(411, "Transfer-Encoding is not supported; send a Content-Length")
    raw = headers.get("content-length")
    if raw is None:
        return 0
    values = {value.strip() for value in raw.split(",")}
    text = values.pop()
    if values or not _DIGITS_RE.fullmatch(text):
        raise FramingError(400, "the Content-Length must be one non-negative integer")
    if len(text) > MAX_CONTENT_LENGTH_DIGITS or int(text) > MAX_BODY_BYTES:
        raise FramingError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    return int(text)


def keep_alive(head: Head) -> bool:
    """Whether the connection stays open after answering ``head`` (HTTP/1.1, no close)."""
    tokens = {token.strip().lower() for token in head.headers.get("connection", "").split(",")}
    return head.version == (1, 1) and "close" not in tokens


def redact(name: str, value: str) -> str:
    """Return a header value fit to record: secret headers (lower-cased ``name``) hidden."""
    if name not in SECRET_HEADERS:
        return value
    return REDACTED_BEARER if BEARER_RE.fullmatch(value.strip()) else REDACTED


def quote(text: str) -> str:
    """Quote client-supplied text for a message, shortened and without control characters."""
    shown = text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + "…"
    return json.dumps(shown, ensure_ascii=False).replace('"', "'")


def printable(text: str | None) -> str:
    """Return client-supplied text for a log line: as is when plain and short, else quoted."""
    if text is None:
        return "-"
    if text.isprintable() and " " not in text and len(text) <= MAX_QUOTED_CHARS:
        return text
    return quote(text)
