"""JSON logs a machine can use, from a real daemon: the event's fields, never the token.

One daemon (in-process, against the sink over loopback) goes through a 401 pause, a reload
that brings a good token, removes a schedule and adds one, then deliveries: first attempts,
a retry and a permanent failure. Every line it logged is read back as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventcron import logs
from eventcron.ledger import Filters
from eventcron.testing import Faults
from tests.integration.harness import running, soon, write_schedule, write_token

FAST_RETRY = """
initial_backoff: 100ms
max_backoff: 200ms
"""
WRONG_SECRET = "w" * 40  # the daemon's first token is signed with it: the sink answers 401


@contextlib.contextmanager
def json_logs(*, verbose: bool) -> Iterator[io.StringIO]:
    """Log as `run --log-format json [--verbose]` does, into a buffer; restore after."""
    names = ("eventcron", "httpx", "httpcore", "apscheduler")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    buffer = io.StringIO()
    logs.setup("json", verbose=verbose, stream=buffer)
    try:
        yield buffer
    finally:
        for n, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(n)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)


def outcome(lines: list[dict[str, Any]], **fields: object) -> list[dict[str, Any]]:
    """Return the delivery-outcome lines whose fields include ``fields``."""
    return [line for line in lines if line["logger"] == "eventcron.dispatch"
            and "event_id" in line and all(line.get(k) == v for k, v in fields.items())]


@pytest.mark.slow
def test_json_logs_carry_each_events_fields_and_never_the_token(tmp_path: Path) -> None:
    at = soon()
    keep = f'  - {{id: a, event_type: "a:b", at: "{at}", users: [u_1, u_2, u_3, x_fail]}}\n'
    faults = Faults(fail_keys={"x_fail": 400}, fail_first=1)

    async def scenario(buffer: io.StringIO) -> tuple[str, str, dict[str, Any]]:
        body = "schedules:\n" + keep + '  - {id: gone, event_type: "g:g", every: 1s,' \
               ' users: [g_1]}\n'
        async with running(tmp_path, body, delivery=FAST_RETRY, faults=faults,
                           token_secret=WRONG_SECRET) as run:
            wrong = (tmp_path / "token").read_text()
            await run.until(lambda: run.daemon.dispatcher.auth_problem is not None)
            # Paused, with rows of both schedules waiting: "a"'s to send after the resume,
            # "gone"'s for the reload to cancel.
            await run.until(lambda: {"a", "gone"} <= {r.schedule_id for r in run.rows()})
            good = write_token(tmp_path)
            path = write_schedule(tmp_path, run.sink.url, "schedules:\n" + keep
                                  + '  - {id: b, event_type: "b:b", every: 1s, users: [v_1]}\n',
                                  delivery=FAST_RETRY)
            assert await run.daemon.reload("test")
            await run.until(lambda: {r.app_user_id for r in run.sink.delivered()}
                            >= {"u_1", "u_2", "u_3", "v_1"})
            await run.until(lambda: any(r.app_user_id == "x_fail" and r.status == "failed"
                                        for r in run.rows()))
            # The event the sink failed once (fail_first) is delivered by its retry.
            await run.until(lambda: any(r.status == "delivered" and r.attempts == 2
                                        for r in run.rows()))
            cancelled = len(run.rows(Filters(schedule=("gone",), status=("cancelled",))))
        delivered = len(run.rows(Filters(status=("delivered",))))
        metrics = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "cancelled": cancelled, "delivered": delivered,
                   "render": run.daemon.metrics.render().decode()}
        return wrong, good, metrics

    with json_logs(verbose=True) as buffer:
        wrong, good, seen = asyncio.run(scenario(buffer))
    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)

    # Never the token: neither the refused one nor the good one, nor their signatures.
    for secret in (wrong, good, wrong.rsplit(".", 1)[1], good.rsplit(".", 1)[1]):
        assert secret not in text

    (paused,) = [line for line in lines if line.get("paused") is True]
    assert paused["level"] == "error" and "HTTP 401" in paused["reason"]
    (resumed,) = [line for line in lines if line.get("paused") is False]
    # "was loaded" by the reload, or "appeared in" if the token watcher saw the file first.
    assert str(resumed["reason"]).startswith("a new token ")

    (reload,) = [line for line in lines if line["msg"].startswith("reloaded ")]
    assert seen["cancelled"] >= 1
    assert {k: reload[k] for k in ("file", "sha256", "added", "removed", "changed",
                                   "cancelled")} == {
        "file": str(tmp_path / "schedules.yaml"), "sha256": seen["sha256"], "added": ["b"],
        "removed": ["gone"], "changed": {}, "cancelled": seen["cancelled"]}
    assert reload["msg"].startswith(f"reloaded {tmp_path / 'schedules.yaml'} (test): added b;"
                                    " removed gone; 2 schedules, 2 jobs;")

    # Every outcome has a line with the event's fields (--verbose).
    assert outcome(lines, status="held", status_code=401, attempt=0)
    first = outcome(lines, schedule="a", status="delivered", status_code=200, attempt=1,
                    error=None, occurrence=at, level="debug")
    retried = outcome(lines, status="retry", status_code=503, attempt=1)
    assert len(retried) == 1 and "HTTP 503" in retried[0]["error"]
    (failed,) = outcome(lines, app_user_id="x_fail", status="failed", status_code=400)
    assert failed["level"] == "warning" and failed["occurrence"] == at
    assert failed["error"].startswith("HTTP 400") and failed["attempt"] == 1
    assert len({line["event_id"] for line in first}) == len(first) >= 2
    assert outcome(lines, schedule="b", app_user_id="v_1", status="delivered")

    # The lateness histogram counted each delivery once: the retried one as "retry".
    families = {f.name: f for f in text_string_to_metric_families(seen["render"])}
    counts = {s.labels["attempt"]: s.value
              for s in families["eventcron_delivery_lateness_seconds"].samples
              if s.name.endswith("_count")}
    assert counts["retry"] == 1
    assert counts["first"] + counts["retry"] == seen["delivered"]
