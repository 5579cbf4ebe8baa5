"""What the sink received: one ``Received`` per answered request, and the record file.

Holds the record (the token is never kept: secret headers are redacted), the JSON-lines
record file (appended by a running sink, read by ``load_records``) and the one-line summary
``eventcron sink`` logs. Touches only the record file it is given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from eventcron.testing.checks import EVENT_FIELDS
from eventcron.testing.wire import Head, printable, redact


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

    @classmethod
    def of_request(cls, head: Head, status: int, event: Any, received_at: float) -> Received:
        """Record a request from its head, the status it was answered and its parsed body."""
        fields: dict[str, Any] = event if isinstance(event, dict) else {}
        user, kind, data = (fields.get(name) for name in EVENT_FIELDS)
        return cls(
            received_at=received_at,
            method=head.method,
            path=head.path,
            status=status,
            app_user_id=user if isinstance(user, str) else None,
            event_type=kind if isinstance(kind, str) else None,
            data=data if isinstance(data, dict) else None,
            idempotency_key=head.headers.get("idempotency-key"),
            user_agent=head.headers.get("user-agent"),
            headers={name: redact(name, value) for name, value in head.headers.items()},
        )


class RecordFile:
    """A record file open for appending: one JSON line per record, flushed at once."""

    def __init__(self, path: Path) -> None:
        # Appended, never truncated: an earlier run's records are not ours to destroy.
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: Received) -> None:
        """Append ``record`` and flush, so a reader sees it while the sink runs."""
        self._file.write(json.dumps(record.to_json()) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def load_records(path: Path) -> list[Received]:
    """Read a record file written by a sink (it may still be running)."""
    with path.open(encoding="utf-8") as lines:
        return [Received.from_json(json.loads(line)) for line in lines if line.endswith("\n")]


def format_record(record: Received) -> str:
    """Return the one-line summary ``serve`` logs, e.g. ``200 POST u_1 reminder:x key=k``."""
    if record.app_user_id is None and record.event_type is None:
        return f"{record.status} {printable(record.method)} {printable(record.path)}"
    return (f"{record.status} {printable(record.method)} {printable(record.app_user_id)}"
            f" {printable(record.event_type)} key={printable(record.idempotency_key)}")
