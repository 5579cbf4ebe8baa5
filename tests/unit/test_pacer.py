"""The endpoint pacer: AIMD window on 429s, pauses, rate limiting."""

from __future__ import annotations

import asyncio
import time

from eventcron.delivery.pacer import Pacer


def test_throttle_halves_the_window_down_to_one_and_pauses() -> None:
    pacer = Pacer(32, None)
    pacer.on_throttle(100.0, 5.0)
    assert pacer.allowed() == 16
    assert pacer.pause_left(102.0) == 3.0
    assert pacer.pause_left(106.0) == 0.0
    for _ in range(10):
        pacer.on_throttle(100.0, 1.0)
    assert pacer.allowed() == 1
    assert pacer.pause_left(104.0) == 1.0  # pauses never shrink an earlier one


def test_successes_grow_the_window_back_gradually() -> None:
    pacer = Pacer(16, None)
    pacer.on_throttle(0.0, 1.0)
    pacer.on_throttle(0.0, 1.0)
    assert pacer.allowed() == 4
    steps = 0
    while pacer.allowed() < 16:
        pacer.on_success()
        steps += 1
    # About one more request in flight per window's worth of successes: 4+5+...+15 = 114.
    assert 100 <= steps <= 130
    for _ in range(1000):
        pacer.on_success()
    assert pacer.allowed() == 16


def test_claims_follow_the_rate_limit() -> None:
    assert Pacer(32, None).claim_limit(32) == 32
    assert Pacer(32, 5.0).claim_limit(32) == 5
    assert Pacer(32, 0.1).claim_limit(32) == 1


def test_take_turn_spaces_requests_at_the_rate() -> None:
    async def turns() -> float:
        pacer = Pacer(32, 20.0)
        began = time.monotonic()
        for _ in range(21):
            await pacer.take_turn()
        return time.monotonic() - began

    # 21 turns at 20/s with a burst of 2: at least ~0.9 s (a lower bound, not a benchmark).
    assert asyncio.run(turns()) >= 0.85


def test_reconfigure_caps_the_window() -> None:
    pacer = Pacer(32, None)
    pacer.configure(8, 10.0)
    assert pacer.allowed() == 8 and pacer.rate == 10.0
