"""Units of the schedule file and the command line: durations, rates and listen addresses.

Pure text-to-value conversions that raise ValueError with a sentence (or return None) and
touch nothing else; the readers put the sentences at a file location or an option.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"  # listeners bind to loopback unless told otherwise

_DURATION_PART: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RATE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*\Z")


def parse_duration(text: str) -> float:
    """Parse ``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number into seconds.

    Raises ValueError with a sentence when the text is not a duration.
    """
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        pass
    else:
        if not 0 <= seconds < float("inf"):  # also refuses NaN
            raise ValueError(f"{text!r} is not a duration; it must not be negative.")
        return seconds
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(stripped):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(stripped) or not stripped:
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m, 1h30m or 2d.")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``90`` → ``1m30s``) for messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def parse_rate(text: str) -> float | None:
    """Parse ``200/s``, ``600/m`` or ``10000/h`` into a positive rate per second, else None."""
    m = _RATE.match(text)
    if not m or float(m.group(1)) <= 0:
        return None
    return float(m.group(1)) / _UNIT_SECONDS[m.group(2)]


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT``; the host defaults to loopback.

    Raises ValueError with a sentence.
    """
    value = text.strip()
    host, port = DEFAULT_HOST, value
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or not value[close + 1:].startswith(":"):
            raise ValueError(f"{text!r} is not an address; write [::1]:9108")
        host, port = value[1:close], value[close + 2:]
    elif ":" in value:
        host, port = value.rsplit(":", 1)
        host = host or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not an address; write 127.0.0.1:9108 or just 9108")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Tell whether a host name or address stays on this machine (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
