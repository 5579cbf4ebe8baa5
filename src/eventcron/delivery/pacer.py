"""The pacer: how hard to push the endpoint (a 429-driven window, a pause, a rate limit).

Pure bookkeeping on the loop's clock; the dispatcher asks it before each claim and send.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

CLAIM_HORIZON: Final = 1.0  # seconds of rate-limited sending claimed at once


class Pacer:
    """How hard to push the endpoint: a 429-driven window, a pause, an optional rate.

    The window halves on every 429 and grows back by about one request per window of
    successes (AIMD, as TCP does), so the whole endpoint slows down, then recovers.
    """

    def __init__(self, concurrency: int, rate: float | None) -> None:
        self.concurrency = concurrency
        self.rate = rate
        self.window = float(concurrency)
        self._pause_until = 0.0  # loop time
        self._tokens = 1.0
        self._last = 0.0

    def configure(self, concurrency: int, rate: float | None) -> None:
        """Apply new limits from a reload."""
        self.concurrency = concurrency
        self.rate = rate
        self.window = min(self.window, float(concurrency))

    def allowed(self) -> int:
        """Return how many requests may be in flight now."""
        return max(1, math.floor(self.window))

    def pause_left(self, now: float) -> float:
        """Return seconds until sending may resume after a 429 (0 when not paused)."""
        return max(0.0, self._pause_until - now)

    def on_success(self) -> None:
        """Grow the window back toward the configured concurrency."""
        if self.window < self.concurrency:
            self.window = min(float(self.concurrency), self.window + 1.0 / self.window)

    def on_throttle(self, now: float, pause: float) -> None:
        """Halve the window and pause the endpoint for ``pause`` seconds after a 429."""
        self.window = max(1.0, self.window / 2)
        self._pause_until = max(self._pause_until, now + pause)

    def claim_limit(self, free: int) -> int:
        """Return how many rows to claim now: no more than can be sent soon."""
        if self.rate is None:
            return free
        return max(1, min(free, math.ceil(self.rate * CLAIM_HORIZON)))

    async def take_turn(self) -> None:
        """Wait for the rate limit, if any (a token bucket with a small burst)."""
        if self.rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        burst = max(1.0, min(float(self.concurrency), self.rate / 10))
        self._tokens = min(burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0  # reserve a token now; a deficit is slept off below
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
