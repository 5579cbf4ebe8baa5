"""The dispatcher: claims due rows, paces them, sends them, records what happened.

It only reads the ledger: nothing it needs lives only in memory, so a crash loses at most
the outcome of requests in flight, which are then sent again with the same
Idempotency-Key once their claim expires.

Right before sending, the campaign rules have their say: a row of a user who opted out is
suppressed, and one due inside its quiet hours waits for the window's end (or expires,
if that is past its expiry) without spending an attempt; a retry is kept out of them too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable
from typing import Final

from eventcron.campaign import OPTED_OUT, Rules
from eventcron.clock import Clock, ms
from eventcron.config import Delivery
from eventcron.delivery.outcomes import Stats, Tally
from eventcron.delivery.pacer import Pacer
from eventcron.delivery.retry import Decision, Outcome, decide, past_quiet_hours
from eventcron.delivery.sender import Sender
from eventcron.ledger import TRANSIENT, Claimed, Ledger, LedgerThread, Result
from eventcron.metrics import Metrics
from eventcron.problems import first_line
from eventcron.text import count

log = logging.getLogger("eventcron.dispatch")

RENEW_SHARE: Final = 3  # claims are renewed this many times per lease
PREFETCH: Final = 4  # windows of rows held (in flight plus claimed and waiting)
IDLE_WAIT: Final = 1.0  # seconds: longest sleep before looking for due rows again
MIN_WAIT: Final = 0.002  # seconds: shortest sleep, so a busy ledger cannot spin the loop
FLUSH_INTERVAL: Final = 0.05  # seconds between writes of results
FLUSH_SIZE: Final = 1000  # results that trigger a write at once
EXPIRE_INTERVAL: Final = 5.0  # seconds between sweeps that expire overdue rows
ERROR_BACKOFF_MAX: Final = 10.0  # seconds between tries while the ledger fails
THROTTLE_PAUSE: Final = 1.0  # seconds to pause after a 429 without Retry-After


__all__ = ["Dispatcher", "ResultHook", "Stats"]

ResultHook = Callable[[Claimed, Outcome, Decision], None]


class Dispatcher:
    """Claims, sends and records, within the endpoint's limits.

    ``rules``: the campaign rules of the plan that runs (None: none apply).
    """

    def __init__(self, db: LedgerThread, sender: Sender, policy: Delivery, *, concurrency: int,
                 rate: float | None, clock: Clock, owner: str,
                 rng: random.Random | None = None, on_result: ResultHook | None = None,
                 metrics: Metrics | None = None,
                 is_active: Callable[[str], bool] = lambda _: True,
                 rules: Rules | None = None) -> None:
        self.db = db
        self.sender = sender
        self.policy = policy
        self.rules = rules
        self.pacer = Pacer(concurrency, rate)
        self.clock = clock
        self.owner = owner
        self.rng = rng or random.Random()
        self.on_result = on_result
        self.is_active = is_active
        self.metrics = metrics or Metrics()
        self.stats = Stats()
        self.tally = Tally(self.stats, self.metrics)
        self.auth_problem: str | None = None  # set while paused by a 401
        self._stopping = False
        self._inflight: dict[int, Claimed] = {}
        # Long-lived senders take rows from _launch through these futures: a task per
        # request would cost more than the rest of the dispatcher's work on it.
        self._idle: collections.deque[asyncio.Future[Claimed]] = collections.deque()
        self._workers: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()
        self._ready: collections.deque[Claimed] = collections.deque()  # claimed, not sent
        self._results: list[Result] = []
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._resumed = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._next_expiry = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._ledger_failed = False  # set by any ledger error until a claim succeeds
        self.alive = True  # for health: false once the loop died

    @property
    def ledger(self) -> Ledger:
        """Return the ledger behind the worker thread."""
        return self.db.ledger

    @property
    def inflight(self) -> int:
        """Return the number of requests in flight."""
        return len(self._inflight)

    def wake(self) -> None:
        """Look for due rows now (called after an enqueue)."""
        self._wake.set()

    def configure(self, sender: Sender, policy: Delivery, concurrency: int,
                  rate: float | None, rules: Rules | None = None) -> None:
        """Apply a reloaded endpoint, policy and campaign rules (None: none apply).

        Requests in flight finish on the old sender; rows claimed and not yet sent are
        judged by the new rules.
        """
        self.sender = sender
        self.policy = policy
        self.rules = rules
        self.pacer.configure(concurrency, rate)
        self._hire(concurrency)
        self.wake()

    def _hire(self, workers: int) -> None:
        while len(self._workers) < workers:
            self._workers.append(asyncio.create_task(
                self._worker(), name=f"eventcron-sender-{len(self._workers)}"))

    def resume(self, reason: str) -> None:
        """Resume sending after a 401 pause (a new token was loaded)."""
        if self.auth_problem is not None:
            log.warning("resuming deliveries: %s", reason,
                        extra={"paused": False, "reason": reason})
        self.auth_problem = None
        self.metrics.paused.set(0)
        self._resumed.set()
        self.wake()

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and send until :meth:`stop`; ledger errors are logged and retried."""
        self._flusher = asyncio.create_task(self._flush_loop(), name="eventcron-flush")
        self._renewer = asyncio.create_task(self._renew_loop(), name="eventcron-renew")
        self._hire(self.pacer.concurrency)
        errors = 0
        try:
            while not self._stopping:
                try:
                    await self._step()
                    errors = 0
                except TRANSIENT as e:
                    self._ledger_failed = True
                    errors += 1
                    delay = _backoff(errors)
                    log.error("the ledger failed while dispatching (%s); retrying in %.1fs",
                              first_line(e), delay)
                    await self._sleep(self._wake, delay)
        except BaseException:
            self.alive = False
            raise

    async def _step(self) -> None:
        if self.auth_problem is not None:
            await self._give_back_ready()
            self._resumed.clear()
            await self._sleep(self._resumed, IDLE_WAIT)
            return
        loop = asyncio.get_running_loop()
        pause = self.pacer.pause_left(loop.time())
        if pause > 0:
            # Interruptible: a stop sets _wake; other wake-ups only re-check the pause.
            await self._sleep(self._wake, min(pause, IDLE_WAIT))
            return
        self._launch()
        # Claims are prefetched in batches of up to one window, so a steady stream of
        # sends costs one claim transaction per batch, not one per freed slot.
        allowed = self.pacer.allowed()
        held = len(self._inflight) + len(self._ready)
        want = self.pacer.claim_limit(PREFETCH * allowed - held)
        if not self._wants_refill():
            await self._sleep(self._slot, IDLE_WAIT)
            return
        if self._ledger_failed and self._results:
            # Our own answers first: once the ledger is back after an outage, neither the
            # expiry sweep nor a claim may act on rows whose outcome is only in memory here.
            await self.flush()
        self._ledger_failed = False
        now_ms = ms(self.clock.now().timestamp())
        if loop.time() >= self._next_expiry:
            self._next_expiry = loop.time() + EXPIRE_INTERVAL
            expired = await self.db.call(self.ledger.expire_due, now_ms)
            if expired:
                self.stats.expired += expired
                self.metrics.outcomes["expired"] += expired  # final failures, for alerts
                log.warning("%s expired before they could be delivered"
                            " (delivery.expires_after)", count(expired, "event"))
        self._wake.clear()
        rows = await self.db.call(self.ledger.claim, self.owner, now_ms, want,
                                  ms(self.policy.claim_lease))
        self._ready.extend(rows)
        self._launch()
        if len(rows) == want:
            return  # more may be due already
        if self._ready:
            await self._sleep(self._slot, IDLE_WAIT)
            return
        due = await self.db.call(self.ledger.next_due, now_ms)
        delay = IDLE_WAIT if due is None else (due - now_ms) / 1000
        await self._sleep(self._wake, min(IDLE_WAIT, max(MIN_WAIT, delay)))

    def _paused(self) -> bool:
        return self.pacer.pause_left(asyncio.get_running_loop().time()) > 0

    def _wants_refill(self) -> bool:
        """Tell whether a claim is due: the rows held fell a window below the prefetch."""
        allowed = self.pacer.allowed()
        held = len(self._inflight) + len(self._ready)
        return held == 0 or PREFETCH * allowed - held >= allowed

    def _launch(self) -> None:
        """Hand claimed rows to idle senders while the window has room.

        Nothing goes out while the endpoint is paused (a 401, or a 429's Retry-After):
        claimed rows wait, and their claims are renewed.
        """
        if self.auth_problem is not None or self._paused():
            return
        allowed = self.pacer.allowed()
        while (self._ready and self._idle and len(self._inflight) < allowed
               and not self._stopping):
            waiter = self._idle.popleft()
            if waiter.done():
                continue  # its worker was cancelled
            row = self._ready.popleft()
            self._inflight[row.id] = row
            waiter.set_result(row)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[Claimed] = loop.create_future()
            self._idle.append(waiter)
            self._launch()
            row = await waiter
            await self._deliver(row)

    async def _give_back_ready(self) -> None:
        if not self._ready:
            return
        ids = [row.id for row in self._ready]
        self._ready.clear()
        await self.db.call(self.ledger.release, ids, self.owner)

    async def _sleep(self, event: asyncio.Event | None, seconds: float) -> None:
        if self._stopping:
            return
        if event is None:
            await asyncio.sleep(seconds)
            return
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    async def _deliver(self, row: Claimed) -> None:
        try:
            if self.pacer.rate is not None:
                # The turn first: waiting for it may take seconds, and what is checked
                # below (expiry, the plan, quiet hours, opt-outs) must hold when it is sent.
                await self.pacer.take_turn()
            now = self.clock.now()
            now_ms = ms(now.timestamp())
            if row.expires_at <= now_ms:
                # It waited in the claimed queue past its expiry (a long 429 pause, say).
                reason = "expired before it could be delivered"
                self._results.append(Result(row.id, "expired", row.attempts, now_ms, None,
                                            reason))
                self.tally.expired(row, reason)
                return
            if not self.is_active(row.schedule_id):
                # Its schedule was removed or disabled after the row was claimed (or the
                # cancellation could not be written yet): never send it.
                self._results.append(Result(row.id, "cancelled", row.attempts, now_ms, None,
                                            "schedule removed or disabled"))
                return
            rules = self.rules
            if rules is not None and rules.active and self._ruled_out(rules, row, now_ms):
                return
            loop = asyncio.get_running_loop()
            began = loop.time()
            self.metrics.in_flight += 1
            try:
                outcome = await self.sender.send(row.event_id, row.app_user_id,
                                                 row.event_type, row.data, now)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - one event must not take the loop down
                # Only the exception's type is kept: its text could quote headers (the token).
                log.error("sending event %s failed unexpectedly (%s); it will be retried",
                          row.event_id, type(e).__name__)
                outcome = Outcome("retry", error=f"unexpected error: {type(e).__name__}")
            finally:
                self.metrics.in_flight -= 1
            self.metrics.attempt(outcome.status_code, loop.time() - began)
            self._settle(row, outcome)
        finally:
            self._inflight.pop(row.id, None)
            if not self._inflight:
                self._drained.set()
            if self._wants_refill():
                self._slot.set()  # only then is the loop worth waking: it claims more

    def _ruled_out(self, rules: Rules, row: Claimed, now_ms: int) -> bool:
        """Record a row the campaign rules keep from being sent now; tell whether they did.

        An opted-out user's row is suppressed; one inside its quiet hours (a replay, a
        catch-up, a clock that drifted, a window added by a reload) waits for the window's
        end without spending an attempt, or expires if that is past its expiry.
        """
        if rules.opted_out(row.app_user_id):
            self._results.append(Result(row.id, "suppressed", row.attempts, now_ms, None,
                                        OPTED_OUT))
            self.tally.suppressed(row, OPTED_OUT)
            return True
        hold = past_quiet_hours(rules, row.schedule_id, row.zone, now_ms, now=now_ms,
                                expires_at=row.expires_at)
        if hold is None:
            return False
        self._results.append(Result(row.id, hold.status, row.attempts, hold.at, None,
                                    hold.reason))
        if hold.status == "expired":
            self.tally.expired(row, hold.reason)
        else:
            self.tally.quiet(row, hold.reason)
        return True

    def _settle(self, row: Claimed, outcome: Outcome) -> None:
        now_ms = ms(self.clock.now().timestamp())
        decision = decide(outcome, row.attempts, now_ms, row.expires_at, policy=self.policy,
                          rng=self.rng)
        rules = self.rules
        if (decision.status == "pending" and not decision.hold and rules is not None
                and rules.active):
            decision = _retry_past_quiet_hours(rules, row, decision, now_ms)
        loop = asyncio.get_running_loop()
        if outcome.kind == "unauthorized":
            self._pause_for_auth(outcome)
        elif outcome.status_code == 429:
            # Retry-After is honoured for the whole endpoint, capped like any backoff.
            pause = min(outcome.retry_after or THROTTLE_PAUSE, self.policy.max_backoff)
            self.pacer.on_throttle(loop.time(), pause)
        elif outcome.kind == "delivered":
            self.pacer.on_success()
            # Holds (401) spend no attempt, so a row held and then delivered is "first".
            self.metrics.delivered((now_ms - row.scheduled_for) / 1000, row.attempts == 0)
        self._results.append(Result(
            row.id, decision.status, decision.attempts, decision.next_attempt_at,
            outcome.status_code, decision.reason,
            delivered_at=now_ms if decision.status == "delivered" else None))
        if len(self._results) >= FLUSH_SIZE:
            self._flush_now.set()
        self.tally.decided(row, outcome, decision)
        if self.on_result is not None:
            self.on_result(row, outcome, decision)

    def _pause_for_auth(self, outcome: Outcome) -> None:
        if self.auth_problem is None:
            self.auth_problem = outcome.error or "HTTP 401"
            self.metrics.paused.set(1)
            log.error("the endpoint rejected the token (%s): deliveries are paused and"
                      " events stay pending without spending attempts until a new token is"
                      " loaded (update %s, then reload: systemctl reload eventcron)",
                      self.auth_problem, self.sender.token.source.describe(),
                      extra={"paused": True, "reason": self.auth_problem})

    # --- results ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            # Always a real wait (never _sleep, which returns at once while stopping):
            # this loop must yield even when there is nothing to flush.
            try:
                async with asyncio.timeout(FLUSH_INTERVAL):
                    await self._flush_now.wait()
            except TimeoutError:
                pass
            self._flush_now.clear()
            try:
                await self.flush()
                failures = 0
            except TRANSIENT as e:
                self._ledger_failed = True
                failures += 1
                delay = _backoff(failures)
                log.error("cannot record %s in the ledger (%s); keeping them and"
                          " retrying in %.1fs", count(len(self._results), "result"),
                          first_line(e), delay)
                await asyncio.sleep(delay)

    async def _renew_loop(self) -> None:
        # A live instance keeps what it holds, however slow a request or the ledger is;
        # only a dead (or cut off) one lets its claims lapse to the others.
        while True:
            await asyncio.sleep(self.policy.claim_lease / RENEW_SHARE)
            held = [*self._inflight, *(r.id for r in self._ready),
                    *(r.id for r in self._results)]
            if not held:
                continue
            try:
                # Only rows this process knows it holds: a claim whose answer was lost in a
                # connection failure lapses, and is taken again, instead of being renewed
                # for as long as this process is busy.
                await self.db.call(self.ledger.renew, self.owner, held,
                                   ms(self.clock.now().timestamp()),
                                   ms(self.policy.claim_lease))
            except TRANSIENT as e:
                log.warning("cannot renew claims (%s); they lapse in %s unless the ledger"
                            " comes back", first_line(e), f"{self.policy.claim_lease:g}s")

    async def flush(self) -> None:
        """Write buffered results to the ledger (kept in memory if the write fails)."""
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            await self.db.call(self.ledger.record, batch, self.owner,
                               ms(self.clock.now().timestamp()))
        except BaseException:
            self._results = batch + self._results
            raise
        if any(r.status == "pending" for r in batch):
            # Retries are claimable only now that their claims are released: look again,
            # instead of sleeping on a "next due" read before this write.
            self._wake.set()

    # --- shutdown -----------------------------------------------------------------------

    async def stop(self, runner: asyncio.Task[None], drain_timeout: float) -> int:
        """Stop claiming, wait up to ``drain_timeout`` for requests in flight, record.

        Requests still in flight after that are cancelled and their rows released, so they
        stay pending for the next start. Returns how many were left.
        """
        self._stopping = True
        for event in (self._wake, self._slot, self._resumed):
            event.set()
        await asyncio.gather(runner, return_exceptions=True)  # no more claims after this
        if self._inflight:
            self._drained.clear()
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._drained.wait()
            except TimeoutError:
                pass
        left = list(self._inflight.values())
        left += self._ready  # claimed, never sent
        self._ready.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for helper in (self._flusher, self._renewer):
            if helper is not None:
                helper.cancel()
                await asyncio.gather(helper, return_exceptions=True)
        for attempt in range(3):
            try:
                await self.flush()
                break
            except TRANSIENT as e:
                # Unrecorded results stay claimed until the lease ends, then are sent
                # again with the same Idempotency-Key: late, never lost.
                log.error("cannot record %s at shutdown (%s)%s",
                          count(len(self._results), "result"),
                          first_line(e), "; retrying" if attempt < 2 else "")
                await asyncio.sleep(0.5)
        if left:
            try:
                await self.db.call(self.ledger.release, [r.id for r in left], self.owner)
            except TRANSIENT as e:
                log.error("cannot release %s (%s); they expire on their own",
                          count(len(left), "claim"), first_line(e))
        return len(left)


def _retry_past_quiet_hours(rules: Rules, row: Claimed, decision: Decision,
                            now_ms: int) -> Decision:
    """Move a retry due inside its quiet hours to the window's end, or expire it.

    ``decision`` (a retry, from :func:`~eventcron.delivery.retry.decide`) keeps its
    attempts and its reason, which gains what the window did.
    """
    hold = past_quiet_hours(rules, row.schedule_id, row.zone, decision.next_attempt_at,
                            now=now_ms, expires_at=row.expires_at)
    if hold is None:
        return decision
    return Decision(hold.status, decision.attempts, hold.at, f"{decision.reason}; {hold.reason}")


def _backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` ledger errors in a row: 0.5 s doubling to the cap."""
    return min(ERROR_BACKOFF_MAX, 0.25 * 2.0 ** min(failures, 10))
