"""What the dispatcher tells: a log line per outcome with its fields, lateness, final counts.

In-process, on the in-memory ledger with a fake clock and a scripted sender (see
test_dispatcher.py); the log lines are read as pytest captures them, then as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest

from eventcron.clock import rfc3339
from eventcron.delivery.retry import Outcome
from eventcron.ledger import Ledger, NewRow
from eventcron.logs import JsonFormatter
from eventcron.metrics import LATENESS_BUCKETS
from tests.unit.fakes import T0, FakeClock, FakeSender, until
from tests.unit.test_dispatcher import NOW, OK, by_user, dispatching, rows

FIELDS = ("schedule", "occurrence", "event_id", "app_user_id", "status", "attempt",
          "status_code", "error")


def per_user(answers: dict[str, list[Outcome]]) -> Callable[[str, str], Outcome]:
    """Answer each user's requests with its list in turn, then deliver."""
    return lambda _event, user: answers.get(user, []).pop(0) if answers.get(user) else OK


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """Return the dispatcher's outcome lines as `--log-format json` writes them."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records
            if r.name == "eventcron.dispatch" and hasattr(r, "event_id")]


def three_outcomes(ledger: Ledger) -> tuple[dict[str, str], FakeClock]:
    """Send u0 (delivered), u1 (503, then delivered by its retry) and u2 (400: failed).

    Each is sent 2 s after its nominal time; the retry 30 s after the first attempt.
    """
    ledger.enqueue(rows("u0", "u1", "u2"), NOW)
    sender = FakeSender(per_user({
        "u1": [Outcome("retry", 503, "HTTP 503 Service Unavailable")],
        "u2": [Outcome("permanent", 400, "HTTP 400 Bad Request: no such event type")]}))
    clock = FakeClock()
    clock.advance(2)

    async def scenario() -> None:
        async with dispatching(ledger, sender, clock) as d:
            await until(lambda: by_user(ledger)["u1"].attempts == 1
                        and by_user(ledger)["u2"].status == "failed")
            clock.advance(30)  # the retry's backoff (the jitter's ceiling, here)
            d.wake()
            await until(lambda: by_user(ledger)["u1"].status == "delivered")
            lateness = (d.metrics.lateness_buckets, d.metrics.lateness_sum)
            ids.update((u, r.event_id) for u, r in by_user(ledger).items())
        assert lateness == expected_lateness(first=2.0, retry=32.0)

    ids: dict[str, str] = {}
    asyncio.run(scenario())
    return ids, clock


def expected_lateness(*, first: float, retry: float) -> tuple[tuple[list[int], list[int]],
                                                              list[float]]:
    buckets = ([0] * (len(LATENESS_BUCKETS) + 1), [0] * (len(LATENESS_BUCKETS) + 1))
    for i, seconds in enumerate((first, retry)):
        buckets[i][next(n for n, le in enumerate(LATENESS_BUCKETS) if seconds <= le)] += 1
    return buckets, [first, retry]


def test_with_verbose_every_outcome_has_a_line_with_the_events_fields(
        memory_ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventcron")
    ids, _ = three_outcomes(memory_ledger)
    lines = outcome_lines(caplog)
    occurrence = rfc3339(T0)
    # Sorted: the three first attempts are in flight together.
    assert sorted(tuple(line[k] for k in ("level", *FIELDS)) for line in lines) == sorted([
        ("debug", "s", occurrence, ids["u0"], "u0", "delivered", 1, 200, None),
        ("debug", "s", occurrence, ids["u1"], "u1", "retry", 1, 503,
         "HTTP 503 Service Unavailable"),
        ("warning", "s", occurrence, ids["u2"], "u2", "failed", 1, 400,
         "HTTP 400 Bad Request: no such event type"),
        ("debug", "s", occurrence, ids["u1"], "u1", "delivered", 2, 200, None),
    ])
    assert all(line["logger"] == "eventcron.dispatch" and ids[str(line["app_user_id"])]
               in str(line["msg"]) for line in lines)


def test_without_verbose_only_final_failures_are_logged(
        memory_ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    ids, _ = three_outcomes(memory_ledger)  # it also proves all three outcomes happened
    (failed,) = outcome_lines(caplog)
    assert (failed["level"], failed["event_id"], failed["status"], failed["status_code"]) == (
        "warning", ids["u2"], "failed", 400)


def test_the_401_pause_and_the_resume_carry_paused_and_the_reason(
        memory_ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    memory_ledger.enqueue(rows("u0"), NOW)
    sender = FakeSender(per_user({"u0": [Outcome("unauthorized", 401, "HTTP 401 Unauthorized")]}))

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock()) as d:
            await until(lambda: d.auth_problem is not None)
            d.resume("a new token was loaded")
            await until(lambda: by_user(memory_ledger)["u0"].status == "delivered")

    asyncio.run(scenario())
    formatter = JsonFormatter()
    said = [json.loads(formatter.format(r)) for r in caplog.records if hasattr(r, "paused")]
    assert [(s["level"], s["paused"], s["reason"]) for s in said] == [
        ("error", True, "HTTP 401 Unauthorized"), ("warning", False, "a new token was loaded")]


def test_rows_that_expire_unsent_count_as_expired_outcomes(memory_ledger: Ledger) -> None:
    # Due now and expiring in a second, looked at 2 s later: no claim takes it, the expiry
    # sweep does.
    memory_ledger.enqueue([NewRow("s", "late", "e:t", NOW, "{}", NOW, NOW + 1000)], NOW)
    clock = FakeClock()
    clock.advance(2)

    async def scenario() -> None:
        async with dispatching(memory_ledger, FakeSender(), clock) as d:
            # The ledger shows the row expired a moment before the sweep's caller, back on
            # the loop, counts it: wait for the count, then check both.
            await until(lambda: d.metrics.outcomes["expired"] >= 1)
            assert by_user(memory_ledger)["late"].status == "expired"
            assert d.metrics.outcomes["expired"] == 1

    asyncio.run(scenario())
