"""Logging: readable text on a terminal, one JSON object per line for journald and shippers.

Volume stays bounded: per-event lines are DEBUG, and bursts of warnings of one kind go
through a :class:`Limiter` that keeps the first few and then counts the rest.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from eventcron.clock import rfc3339
from eventcron.text import count

LogFormat = Literal["text", "json"]
LIMIT_INTERVAL: Final = 10.0  # seconds over which a Limiter counts lines


class TextFormatter(logging.Formatter):
    """``2026-11-26 09:00:00.123 INFO message`` (local time, like most daemons).

    Each line of a message of several lines (a reload's problems) starts with the time
    and level too, so that ``grep`` and ``journalctl`` show none of them out of context.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(message)s",
                         datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Render the record, repeating its time and level on every line."""
        text = super().format(record)
        if "\n" not in text:
            return text
        first, *rest = text.split("\n")
        head = f"{record.asctime}.{int(record.msecs):03d} {record.levelname} "
        return "\n".join([first, *(head + line for line in rest)])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, RFC 3339), level, logger, msg, and the event's fields.

    The fields are what the call passed with ``extra=`` (schedule, occurrence, event_id,
    status, ...): every attribute a plain LogRecord does not have. A value JSON cannot
    hold is dropped rather than turned into text, since an object's ``str()`` is not
    written for logs (and could carry what must never be logged); a datetime is RFC 3339.
    """

    _SKIP: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message", "asctime", "ts", "level", "logger", "msg", "exc"}

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        item: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._SKIP and not key.startswith("_"):
                plain = _plain(value)
                if plain is not _DROP:
                    item[key] = plain
        if record.exc_info:
            item["exc"] = self.formatException(record.exc_info)
        return json.dumps(item, ensure_ascii=False)


_DROP: Final = object()
_SCALARS: Final = (str, int, float, bool, type(None))


def _plain(value: object, depth: int = 0) -> object:
    """Return ``value`` as JSON can hold it, or :data:`_DROP` when it cannot."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            return _DROP  # NaN and infinities are not JSON
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return _DROP  # a naive time says no zone: better absent than misread
        utc = value.astimezone(UTC)
        return rfc3339(utc) if not utc.microsecond else (
            utc.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    if depth < 3 and isinstance(value, list | tuple):
        items = [_plain(v, depth + 1) for v in value]
        return _DROP if any(v is _DROP for v in items) else items
    if depth < 3 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        pairs = {k: _plain(v, depth + 1) for k, v in value.items()}
        return _DROP if any(v is _DROP for v in pairs.values()) else pairs
    return _DROP


def setup(fmt: LogFormat = "text", *, verbose: bool = False,
          stream: TextIO | None = None) -> None:
    """Send eventcron's logs to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("eventcron")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # Libraries log request lines at INFO (httpx) or chatter (apscheduler); keep them quiet
    # unless asked, and never let them print headers.
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Limiter:
    """Logs at most ``per_interval`` lines per :data:`LIMIT_INTERVAL`, then one summary."""

    def __init__(self, logger: logging.Logger, what: str, per_interval: int = 20) -> None:
        self.logger = logger
        self.what = what  # singular: "final failure"
        self.per_interval = per_interval
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def log(self, level: int, msg: str, *args: Any,
            extra: Mapping[str, object] | None = None) -> None:
        """Log (with the fields in ``extra``), unless this interval's quota is spent."""
        now = time.monotonic()
        if now - self._window_start >= LIMIT_INTERVAL:
            if self._suppressed:
                self.logger.log(level, "... and %s more in the last %.0fs (not shown)",
                                count(self._suppressed, self.what), now - self._window_start)
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self.per_interval:
            self._count += 1
            self.logger.log(level, msg, *args, extra=extra)
        else:
            self._suppressed += 1


def warn(message: str) -> None:
    """Log a warning from outside the daemon's modules (the command line)."""
    logging.getLogger("eventcron").warning(message)


def quiet() -> None:
    """Keep only warnings and errors (the demo prints its own lines)."""
    logging.getLogger("eventcron").setLevel(logging.WARNING)
