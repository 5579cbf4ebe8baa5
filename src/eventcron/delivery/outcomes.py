"""The dispatcher's bookkeeping of outcomes: counts, metrics and log lines.

What each row came to is counted for the shutdown summary (:class:`Stats`) and the
metrics, and told in the log: every final failure (a bounded share of them unless
``--verbose``), every other outcome only with ``--verbose``. Nothing here decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eventcron.clock import from_ms, rfc3339
from eventcron.delivery.retry import Decision, Outcome
from eventcron.ledger import Claimed
from eventcron.logs import Limiter
from eventcron.metrics import Metrics

log = logging.getLogger("eventcron.dispatch")  # the dispatcher's lines, as before the split


@dataclass(slots=True)
class Stats:
    """Counts of what the dispatcher did, for the shutdown summary and the demo."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    held: int = 0
    suppressed: int = 0  # not sent: the user opted out
    quiet: int = 0  # held by quiet hours until the window's end

    def line(self) -> str:
        """Summarize as one line."""
        return (f"{self.delivered} delivered, {self.retried} retries scheduled,"
                f" {self.failed} failed, {self.expired} expired,"
                f" {self.suppressed} suppressed")


class Tally:
    """Counts and tells each outcome: in :class:`Stats`, the metrics and the log."""

    def __init__(self, stats: Stats, metrics: Metrics) -> None:
        self.stats = stats
        self.metrics = metrics
        self._failures = Limiter(log, "final failure", per_interval=20)

    def decided(self, row: Claimed, outcome: Outcome, decision: Decision) -> None:
        """Count and tell what an attempt (or a 401 hold) made of a row."""
        label = "held" if decision.hold else (
            "retry" if decision.status == "pending" else decision.status)
        self.metrics.outcome(label)
        if decision.hold:
            self.stats.held += 1
        elif decision.status == "delivered":
            self.stats.delivered += 1
        elif decision.status == "pending":
            self.stats.retried += 1
        else:
            if decision.status == "failed":
                self.stats.failed += 1
            else:
                self.stats.expired += 1
            self.final(row, decision.status, decision.reason, decision.attempts,
                       outcome.status_code)
            return
        # One line per outcome only with --verbose (DEBUG): at full speed that is
        # thousands of lines a second, so nothing of it is built otherwise.
        if log.isEnabledFor(logging.DEBUG):
            attempt = row.attempts + (0 if decision.hold else 1)
            fields = event_fields(row, label, attempt, outcome.status_code, decision.reason)
            if label == "delivered":
                log.debug("event %s (%s, user %s) delivered: HTTP %s, attempt %d",
                          row.event_id, row.schedule_id, row.app_user_id, outcome.status_code,
                          attempt, extra=fields)
            elif label == "held":
                log.debug("event %s (%s, user %s) held while the endpoint refuses the"
                          " token: %s", row.event_id, row.schedule_id, row.app_user_id,
                          decision.reason, extra=fields)
            else:
                log.debug("event %s (%s, user %s) will be retried after attempt %d: %s",
                          row.event_id, row.schedule_id, row.app_user_id, attempt,
                          decision.reason, extra=fields)

    def expired(self, row: Claimed, reason: str) -> None:
        """Count and tell a row that expired before it was sent (no attempt spent)."""
        self.stats.expired += 1
        self.metrics.outcome("expired")
        self.final(row, "expired", reason, row.attempts, None)

    def suppressed(self, row: Claimed, reason: str) -> None:
        """Count a row not sent because its user opted out (a line only with --verbose)."""
        self.stats.suppressed += 1
        self._ruled(row, "suppressed", f"suppressed: {reason}", reason)

    def quiet(self, row: Claimed, reason: str) -> None:
        """Count a row held by quiet hours (no attempt spent; a line only with --verbose)."""
        self.stats.quiet += 1
        self._ruled(row, "quiet", reason, reason)

    def _ruled(self, row: Claimed, label: str, said: str, reason: str) -> None:
        # A campaign rule kept the row from being sent now: counted, told only with --verbose.
        self.metrics.outcome(label)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("event %s (%s, user %s) %s", row.event_id, row.schedule_id,
                      row.app_user_id, said,
                      extra=event_fields(row, label, row.attempts, None, reason))

    def final(self, row: Claimed, status: str, reason: str | None, attempt: int,
              status_code: int | None) -> None:
        """Log a final failure: every one with --verbose, else a bounded share of them."""
        fields = event_fields(row, status, attempt, status_code, reason)
        args = (row.event_id, row.schedule_id, row.app_user_id, status, reason)
        if log.isEnabledFor(logging.DEBUG):
            log.warning("event %s (%s, user %s) %s: %s", *args, extra=fields)
        else:
            self._failures.log(logging.WARNING, "event %s (%s, user %s) %s: %s", *args,
                               extra=fields)


def event_fields(row: Claimed, status: str, attempt: int, status_code: int | None,
                 error: str | None) -> dict[str, object]:
    """Return the fields of a delivery outcome's log line (``extra``), for JSON logs.

    ``status``: delivered, retry, held, quiet, suppressed, failed or expired; ``attempt``:
    the attempts spent on the event so far, this one included (a hold spends none).
    """
    return {"schedule": row.schedule_id, "occurrence": rfc3339(from_ms(row.scheduled_for)),
            "event_id": row.event_id, "app_user_id": row.app_user_id, "status": status,
            "attempt": attempt, "status_code": status_code, "error": error}
