"""Fault injection for the sink: the settings, and the draw that picks a fault per request.

Holds ``Faults`` (what to inject, validated) and ``FaultInjector`` (the seeded random
sequence and the ``fail_first`` budget that turn those settings into an ``Answer`` for each
request that passed the contract). Decides only; the sink does the waiting and writing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from http import HTTPStatus

from eventcron.testing.answers import Answer
from eventcron.testing.wire import quote


@dataclass
class Faults:
    """Fault injection settings; read for every request, so tests may change them at runtime.

    Rates are shares in [0, 1]; durations are seconds. The random draws come from
    ``random.Random(seed)``, one draw per valid request, so the number of injected failures
    over the same number of requests is the same on every run. Assigning a new ``Faults`` to
    ``Sink.faults`` restarts the random sequence and the ``fail_first`` budget. The outage
    settings (``down_after``, ``down_for``, ``down_every``) are read when the sink starts.
    """

    fail_rate: float = 0.0
    reset_rate: float = 0.0  # share of requests answered by dropping the connection
    garbage_rate: float = 0.0  # share answered with bytes that are not HTTP
    huge_rate: float = 0.0  # share answered 200 with a 10 MB body (the event is accepted)
    endless_rate: float = 0.0  # share answered 200 with a body that never ends (accepted)
    fail_status: int = 503
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    down_after: float | None = None
    down_for: float = 0.0
    down_every: float | None = None
    fail_first: int = 0
    fail_keys: dict[str, int] = field(default_factory=dict)
    reject_token: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that makes no sense."""
        rates = (("fail_rate", self.fail_rate), ("throttle_rate", self.throttle_rate),
                 ("reset_rate", self.reset_rate), ("garbage_rate", self.garbage_rate),
                 ("huge_rate", self.huge_rate), ("endless_rate", self.endless_rate))
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if sum(rate for _, rate in rates) > 1.0:
            raise ValueError("the fault rates together must not exceed 1")
        for name, value in (("retry_after", self.retry_after), ("latency", self.latency),
                            ("down_for", self.down_for), ("fail_first", self.fail_first)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        if self.down_after is not None and self.down_after < 0:
            raise ValueError(f"down_after must not be negative, not {self.down_after}")
        if self.down_every is not None:
            if self.down_after is None:
                raise ValueError("down_every needs down_after")
            if self.down_every <= self.down_for:
                raise ValueError("down_every must be longer than down_for")
        statuses = [("fail_status", self.fail_status)]
        statuses += [(f"fail_keys[{user!r}]", status) for user, status in self.fail_keys.items()]
        for name, status in statuses:
            if not 200 <= status <= 599:
                raise ValueError(f"{name} must be an HTTP status from 200 to 599, not {status}")


class FaultInjector:
    """Turns ``Faults`` into answers: one random draw per valid request, reproducibly."""

    def __init__(self, faults: Faults) -> None:
        self._rng = random.Random(faults.seed)
        self._rng_faults = faults
        self._rng_seed = faults.seed
        self._failed_first = 0

    def answer(self, faults: Faults, app_user_id: str) -> Answer:
        """Return the answer to a valid event for ``app_user_id`` under ``faults``.

        A ``faults`` object other than the last one seen, or a changed seed, restarts the
        random sequence and the ``fail_first`` budget.
        """
        if faults is not self._rng_faults or faults.seed != self._rng_seed:
            self._rng = random.Random(faults.seed)
            self._rng_faults, self._rng_seed = faults, faults.seed
            self._failed_first = 0
        # Exactly one draw per valid request, whatever else applies: the number of draws
        # below each threshold then depends only on how many requests came, not their order.
        draw = self._rng.random()
        delay = faults.latency
        status = faults.fail_keys.get(app_user_id)
        if status is not None:
            message = f"failure injected for app_user_id {quote(app_user_id)}"
            return Answer(status, message if status >= 300 else None, _extra(status, faults),
                          delay)
        if self._failed_first < faults.fail_first:
            self._failed_first += 1
            return Answer(faults.fail_status, "failure injected (fail_first)",
                          _extra(faults.fail_status, faults), delay)
        if draw < faults.fail_rate:
            return Answer(faults.fail_status, "failure injected (fail_rate)",
                          _extra(faults.fail_status, faults), delay)
        if draw < faults.fail_rate + faults.throttle_rate:
            message = f"too many requests; retry after {_retry_after(faults)} seconds"
            return Answer(429, message, _extra(429, faults), delay)
        edge = faults.fail_rate + faults.throttle_rate
        for mode, rate, status in (("reset", faults.reset_rate, 0),
                                   ("garbage", faults.garbage_rate, 0),
                                   ("huge", faults.huge_rate, 200),
                                   ("endless", faults.endless_rate, 200)):
            edge += rate
            if draw < edge:
                return Answer(status, None, (), delay, mode)
        return Answer(200, None, (), delay)


def _retry_after(faults: Faults) -> int:
    # Retry-After is a whole number of seconds (RFC 9110 §10.2.3): round up, never shorten.
    return math.ceil(faults.retry_after)


def _extra(status: int, faults: Faults) -> tuple[tuple[str, str], ...]:
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return (("Retry-After", str(_retry_after(faults))),)
    if status == HTTPStatus.UNAUTHORIZED:
        return (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
    return ()
