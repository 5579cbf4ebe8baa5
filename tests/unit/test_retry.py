"""Retry policy: classification, Retry-After, backoff bounds, and decisions."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcron.config import Delivery
from eventcron.delivery.retry import Outcome, backoff, classify, decide, parse_retry_after

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
POLICY = Delivery(max_attempts=5, initial_backoff=10.0, max_backoff=300.0,
                  expires_after=3600.0, catch_up=3600.0, catch_up_mode="latest")


@pytest.mark.parametrize(("status", "kind"), [
    (200, "delivered"), (201, "delivered"), (202, "delivered"), (204, "delivered"),
    (408, "retry"), (425, "retry"), (429, "retry"), (500, "retry"), (502, "retry"),
    (503, "retry"), (504, "retry"), (599, "retry"),
    (401, "unauthorized"),
    (301, "permanent"), (400, "permanent"), (403, "permanent"), (404, "permanent"),
    (405, "permanent"), (410, "permanent"), (413, "permanent"), (415, "permanent"),
    (422, "permanent"),
])
def test_classify(status: int, kind: str) -> None:
    assert classify(status) == kind


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0),
    ("Thu, 26 Nov 2026 12:01:30 GMT", 90.0),
    ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past: retry now
    (None, None), ("soon", None), ("-5", None), ("", None),
])
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@settings(max_examples=300, deadline=None)
@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    wait = backoff(attempt, POLICY, random.Random(seed))
    ceiling = min(POLICY.max_backoff, POLICY.initial_backoff * 2 ** (attempt - 1))
    assert 0 <= wait <= ceiling


def test_backoff_spreads_over_the_whole_range() -> None:
    rng = random.Random(1)
    waits = [backoff(3, POLICY, rng) for _ in range(2000)]
    assert min(waits) < 2 and max(waits) > 38  # ceiling 40 s: full jitter, not "equal"


def d(outcome: Outcome, attempts: int = 0, expires_in: float = 3600.0) -> tuple[str, int, int]:
    decision = decide(outcome, attempts, NOW_MS, NOW_MS + int(expires_in * 1000),
                      policy=POLICY, rng=random.Random(0))
    return decision.status, decision.attempts, decision.next_attempt_at - NOW_MS


def test_delivered_counts_the_attempt() -> None:
    assert d(Outcome("delivered", 200), attempts=2) == ("delivered", 3, 0)


def test_permanent_errors_fail_at_once() -> None:
    decision = decide(Outcome("permanent", 400, "HTTP 400 Bad Request"), 0, NOW_MS,
                      NOW_MS + 10**7, policy=POLICY, rng=random.Random(0))
    assert (decision.status, decision.attempts, decision.reason) == (
        "failed", 1, "HTTP 400 Bad Request")


def test_retriable_errors_wait_within_the_backoff() -> None:
    status, attempts, wait = d(Outcome("retry", 503), attempts=1)
    assert (status, attempts) == ("pending", 2)
    assert 0 <= wait <= 20_000


def test_retry_after_is_honoured_and_capped() -> None:
    assert d(Outcome("retry", 429, retry_after=120.0))[2] >= 120_000
    assert d(Outcome("retry", 429, retry_after=10_000.0))[2] == 300_000  # max_backoff


def test_attempts_run_out() -> None:
    status, attempts, _ = d(Outcome("retry", 500), attempts=4)
    assert (status, attempts) == ("failed", 5)


def test_a_retry_after_past_the_expiry_expires_now() -> None:
    status, attempts, wait = d(Outcome("retry", 429, retry_after=120.0), expires_in=60.0)
    assert (status, attempts, wait) == ("expired", 1, 0)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), attempts=st.integers(0, 3))
def test_a_retry_never_expires_while_time_is_left(seed: int, attempts: int) -> None:
    decision = decide(Outcome("retry", 503), attempts, NOW_MS, NOW_MS + 3_600_000,
                      policy=POLICY, rng=random.Random(seed))
    assert decision.status == "pending"
    assert NOW_MS <= decision.next_attempt_at < NOW_MS + 3_600_000


def test_a_zero_wait_from_full_jitter_is_retried_at_once() -> None:
    class Zero(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return 0.0

    decision = decide(Outcome("retry", 503), 0, NOW_MS, NOW_MS + 3_600_000, policy=POLICY,
                      rng=Zero())
    assert (decision.status, decision.next_attempt_at) == ("pending", NOW_MS)


def test_a_backoff_past_the_expiry_becomes_a_last_attempt_before_it() -> None:
    status, attempts, wait = d(Outcome("retry", 503), attempts=3, expires_in=5.0)
    assert (status, attempts) == ("pending", 4)
    assert wait <= 4_900  # at the latest 100 ms before the expiry
    assert d(Outcome("retry", 503), attempts=3, expires_in=0.05)[0] == "expired"


def test_unauthorized_holds_without_spending_an_attempt() -> None:
    decision = decide(Outcome("unauthorized", 401, "HTTP 401"), 3, NOW_MS, NOW_MS + 10**7,
                      policy=POLICY, rng=random.Random(0))
    assert (decision.status, decision.attempts, decision.hold) == ("pending", 3, True)
