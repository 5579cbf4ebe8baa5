"""`--log-format json`: the four keys, the event's fields, nothing JSON cannot hold."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from eventcron import logs
from eventcron.logs import JsonFormatter, Limiter
from eventcron.metrics import LATENESS_BUCKETS, Metrics


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("eventcron.test").makeRecord(
        "eventcron.test", logging.INFO, __file__, 1, msg, args or ("world",), None,
        extra=extra)


def render(rec: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


class Opaque:
    """An object whose text must never reach a log (a stand-in for a token holder)."""

    def __str__(self) -> str:
        return "SECRET-TEXT"

    __repr__ = __str__


def test_every_line_has_the_four_keys_and_the_calls_fields() -> None:
    item = render(record(schedule="s", rows=3, paused=True, error=None, ratio=0.5,
                         added=["a", "b"], counts={"pending": 1}))
    assert item.pop("ts") and item == {
        "level": "info", "logger": "eventcron.test", "msg": "hello world", "schedule": "s",
        "rows": 3, "paused": True, "error": None, "ratio": 0.5, "added": ["a", "b"],
        "counts": {"pending": 1}}


def test_times_are_rfc3339_utc_and_what_json_cannot_hold_is_left_out() -> None:
    berlin = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).astimezone()
    item = render(record(occurrence=datetime(2026, 12, 1, 9, 0, tzinfo=UTC), local=berlin,
                         precise=datetime(2026, 12, 1, 9, 0, 0, 250_000, tzinfo=UTC),
                         naive=datetime(2026, 12, 1, 9, 0), thing=Opaque(),
                         things=[1, Opaque()], nan=float("nan"), pair=(1, "x")))
    assert item["occurrence"] == "2026-12-01T09:00:00Z"
    assert item["local"] == "2026-12-01T10:00:00Z"
    assert item["precise"] == "2026-12-01T09:00:00.250Z"
    assert item["pair"] == [1, "x"]
    assert not {"naive", "thing", "things", "nan"} & item.keys()
    assert "SECRET-TEXT" not in JsonFormatter().format(record(thing=Opaque()))


def test_a_field_cannot_replace_the_four_keys() -> None:
    item = render(record(ts="forged", level="forged", logger="forged"))
    assert "forged" not in item.values()


def test_the_limiter_passes_the_fields_of_the_lines_it_keeps(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    limiter = Limiter(logging.getLogger("eventcron.test"), "failure", per_interval=2)
    for i in range(5):
        limiter.log(logging.WARNING, "failure %d", i, extra={"attempt": i})
    assert [(r.getMessage(), getattr(r, "attempt", None)) for r in caplog.records] == [
        ("failure 0", 0), ("failure 1", 1)]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger("eventcron")
    saved = root.handlers[:], root.level, root.propagate
    quiet = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "apscheduler")}
    yield
    root.handlers[:], root.propagate = saved[0], saved[2]
    root.setLevel(saved[1])
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_setup_json_writes_one_object_per_line_with_fields() -> None:
    stream = io.StringIO()
    logs.setup("json", verbose=False, stream=stream)
    log = logging.getLogger("eventcron.dispatch")
    log.debug("not without --verbose", extra={"status": "delivered"})
    log.warning("event %s failed", "e1", extra={"status": "failed", "event_id": "e1"})
    (line,) = stream.getvalue().splitlines()
    item = json.loads(line)
    assert (item["level"], item["logger"], item["msg"], item["status"], item["event_id"]) == (
        "warning", "eventcron.dispatch", "event e1 failed", "failed", "e1")


def test_lateness_buckets_count_first_attempts_and_retries_apart() -> None:
    m = Metrics()
    m.delivered(0.2, first=True)
    m.delivered(60.0, first=True)  # a bound belongs to its bucket (le: less or equal)
    m.delivered(90.0, first=False)
    m.delivered(10 * 86400.0, first=False)  # past the last bound: +Inf only
    text = m.render().decode()
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="first",le="0.5"} 1.0' in text
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="first",le="30.0"} 1.0' in text
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="first",le="60.0"} 2.0' in text
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="retry",le="60.0"} 0.0' in text
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="retry",le="120.0"} 1.0' in text
    last = repr(LATENESS_BUCKETS[-1])
    assert f'eventcron_delivery_lateness_seconds_bucket{{attempt="retry",le="{last}"}} 1.0' \
        in text
    assert 'eventcron_delivery_lateness_seconds_bucket{attempt="retry",le="+Inf"} 2.0' in text
    assert 'eventcron_delivery_lateness_seconds_count{attempt="first"} 2.0' in text
    assert 'eventcron_delivery_lateness_seconds_sum{attempt="first"} 60.2' in text


def test_last_fire_keeps_the_latest_occurrence_of_each_schedule() -> None:
    m = Metrics()
    m.last_fire("a", 2000.0)
    m.last_fire("a", 1000.0)  # an older occurrence fired later (a catch-up)
    m.last_fire("b", 1500.0)
    text = m.render().decode()
    assert 'eventcron_last_fire_timestamp_seconds{schedule="a"} 2000.0' in text
    assert 'eventcron_last_fire_timestamp_seconds{schedule="b"} 1500.0' in text
