"""The dispatcher in-process: an in-memory ledger, a scripted sender and a fake clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from eventcron.campaign import Rules
from eventcron.clock import to_ms
from eventcron.config import Delivery
from eventcron.delivery.dispatch import Dispatcher
from eventcron.delivery.retry import Outcome
from eventcron.ledger import Filters, Ledger, NewRow, Row
from eventcron.metrics import Metrics
from tests.unit.fakes import T0, FakeClock, FakeSender, ledger_thread, until

NOW = to_ms(T0)
HOUR = 3_600_000
POLICY = Delivery(max_attempts=5, initial_backoff=30.0, max_backoff=600.0)
OK = Outcome("delivered", 200)


class LongestWait(random.Random):
    """Full jitter that always picks its ceiling, so a backoff is exactly predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def rows(*users: str, schedule: str = "s", due: int = NOW) -> list[NewRow]:
    return [NewRow(schedule, u, "e:t", NOW, '{"k":1}', due, NOW + HOUR) for u in users]


def by_user(ledger: Ledger) -> dict[str, Row]:
    return {r.app_user_id: r for r in ledger.rows(Filters())}


def scripted(*first: Outcome) -> Callable[[str, str], Outcome]:
    """Answer with ``first`` in turn, then deliver everything."""
    script: Iterator[Outcome] = iter(first)
    return lambda _event, _user: next(script, OK)


@asynccontextmanager
async def dispatching(ledger: Ledger, sender: FakeSender, clock: FakeClock,
                      rules: Rules | None = None, *, concurrency: int = 4,
                      rate: float | None = None, is_active: Callable[[str], bool] = lambda _: True,
                      ) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher over ``ledger`` (with the campaign ``rules``, if any) while inside."""
    async with ledger_thread(ledger) as db:
        d = Dispatcher(db, sender.as_sender(), POLICY, concurrency=concurrency, rate=rate,
                       clock=clock, owner="unit-test", rng=LongestWait(), metrics=Metrics(),
                       is_active=is_active, rules=rules)
        task = asyncio.create_task(d.run())
        try:
            yield d
        finally:
            await d.stop(task, 1.0)
            assert d.alive, "the dispatch loop died"


def test_due_rows_are_delivered_once_each_and_recorded(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("u0", "u1", "u2") + rows("later", due=NOW + 60_000), NOW)
    sender = FakeSender()

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock()) as d:
            await until(lambda: memory_ledger.counts()["delivered"] == 3)
            await asyncio.sleep(0.05)  # time enough to send "later" too early, were it to
            assert d.stats.delivered == 3
            found = by_user(memory_ledger)
        assert sorted(sender.sent) == sorted((found[u].event_id, u) for u in ("u0", "u1", "u2"))
        for u in ("u0", "u1", "u2"):
            assert (found[u].status, found[u].attempts, found[u].last_status_code,
                    found[u].delivered_at) == ("delivered", 1, 200, NOW)
        assert (found["later"].status, found["later"].attempts) == ("pending", 0)

    asyncio.run(scenario())


def test_a_retryable_answer_backs_off_then_delivers_when_due(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("u0"), NOW)
    sender = FakeSender(scripted(Outcome("retry", 503, "HTTP 503 Service Unavailable")))
    clock = FakeClock()

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, clock) as d:
            await until(lambda: by_user(memory_ledger)["u0"].attempts == 1)
            row = by_user(memory_ledger)["u0"]
            assert (row.status, row.last_status_code, row.last_error) == (
                "pending", 503, "HTTP 503 Service Unavailable")
            # The first retry waits initial_backoff (the jitter's ceiling, here).
            assert row.next_attempt_at == NOW + 30_000
            clock.advance(29)
            # A probe due now proves the dispatcher looked at +29 s, when u0 was not due.
            memory_ledger.enqueue(rows("probe", due=NOW + 29_000), NOW)
            d.wake()
            await until(lambda: by_user(memory_ledger)["probe"].status == "delivered")
            assert [u for _, u in sender.sent] == ["u0", "probe"]  # u0 not due yet
            clock.advance(1)
            d.wake()
            await until(lambda: by_user(memory_ledger)["u0"].status == "delivered")
            assert by_user(memory_ledger)["u0"].attempts == 2
        assert [u for _, u in sender.sent] == ["u0", "probe", "u0"]
        assert sender.sent[0] == sender.sent[2]  # the same event id both times

    asyncio.run(scenario())


def test_a_permanent_failure_ends_failed_with_its_reason(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("u0"), NOW)
    reason = "HTTP 400 Bad Request: unknown event type"
    sender = FakeSender(scripted(Outcome("permanent", 400, reason)))
    clock = FakeClock()

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, clock) as d:
            await until(lambda: by_user(memory_ledger)["u0"].status != "pending")
            clock.advance(3000)  # far beyond any backoff, within the rows' expiry
            # A probe due then proves the dispatcher looked again after the failure.
            memory_ledger.enqueue(rows("probe", due=NOW + 3_000_000), NOW)
            d.wake()
            await until(lambda: by_user(memory_ledger)["probe"].status == "delivered")
            assert d.stats.failed == 1
            row = by_user(memory_ledger)["u0"]
        assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
            "failed", 1, 400, reason)
        assert [u for _, u in sender.sent] == ["u0", "probe"]

    asyncio.run(scenario())


def test_a_401_pauses_every_send_until_resumed(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("u0", "u1", "u2", "u3"), NOW)
    sender = FakeSender(scripted(Outcome("unauthorized", 401, "HTTP 401 Unauthorized")))

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(), concurrency=1) as d:
            await until(lambda: any(r.last_status_code == 401
                                    for r in memory_ledger.rows(Filters())))
            assert d.auth_problem == "HTTP 401 Unauthorized"
            await asyncio.sleep(0.1)
            assert len(sender.sent) == 1  # nothing more while paused
            assert memory_ledger.counts()["pending"] == 4
            assert all(r.attempts == 0 for r in memory_ledger.rows(Filters()))  # none spent
            d.resume("a new token was loaded")
            await until(lambda: memory_ledger.counts()["delivered"] == 4)
            assert d.auth_problem is None
            assert all(r.attempts == 1 for r in memory_ledger.rows(Filters()))
        assert len(sender.sent) == 5  # the held one again, then the rest

    asyncio.run(scenario())


def test_rows_of_an_inactive_schedule_are_cancelled_not_sent(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("g0", "g1", schedule="gone") + rows("k0", "k1", schedule="kept"),
                          NOW)
    sender = FakeSender()

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(),
                               is_active=lambda sid: sid == "kept"):
            await until(lambda: memory_ledger.counts()["pending"] == 0)
            found = by_user(memory_ledger)
        assert sorted(u for _, u in sender.sent) == ["k0", "k1"]
        for u in ("g0", "g1"):
            assert (found[u].status, found[u].attempts, found[u].last_error) == (
                "cancelled", 0, "schedule removed or disabled")

    asyncio.run(scenario())


def test_configure_sends_later_rows_through_the_new_sender(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows("u0"), NOW)
    old, new = FakeSender(), FakeSender()

    async def scenario() -> None:
        async with dispatching(memory_ledger, old, FakeClock()) as d:
            await until(lambda: memory_ledger.counts()["delivered"] == 1)
            d.configure(new.as_sender(), POLICY, 2, None)
            memory_ledger.enqueue(rows("u1"), NOW)
            d.wake()
            await until(lambda: memory_ledger.counts()["delivered"] == 2)

    asyncio.run(scenario())
    assert [u for _, u in old.sent] == ["u0"]
    assert [u for _, u in new.sent] == ["u1"]


def test_no_more_than_concurrency_requests_are_in_flight(memory_ledger: Ledger) -> None:
    memory_ledger.enqueue(rows(*(f"u{i}" for i in range(12))), NOW)
    sender = FakeSender(latency=0.02)

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(), concurrency=3):
            await until(lambda: memory_ledger.counts()["delivered"] == 12)

    asyncio.run(scenario())
    assert sender.max_in_flight == 3  # the limit is reached, never passed


def test_a_lowered_concurrency_holds_for_senders_already_started(memory_ledger: Ledger) -> None:
    sender = FakeSender(latency=0.02)

    async def scenario() -> None:
        async with dispatching(memory_ledger, sender, FakeClock(), concurrency=6) as d:
            await asyncio.sleep(0.01)  # its six senders are waiting for rows
            d.configure(sender.as_sender(), POLICY, 2, None)
            memory_ledger.enqueue(rows(*(f"u{i}" for i in range(10))), NOW)
            d.wake()
            await until(lambda: memory_ledger.counts()["delivered"] == 10)

    asyncio.run(scenario())
    assert sender.max_in_flight == 2
