"""The endpoint connection the service sends through: the sender and the token it carries.

Replaced on reload when the endpoint changes (requests in flight finish on the old sender),
and given a new token when one is loaded or appears while deliveries are paused by a 401.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from eventcron import config
from eventcron.clock import Clock
from eventcron.delivery import auth
from eventcron.delivery.auth import Token, TokenError
from eventcron.delivery.sender import Sender

log = logging.getLogger("eventcron")


class Connection:
    """The current sender and token."""

    def __init__(self, endpoint: config.Endpoint, token: Token, clock: Clock) -> None:
        self.endpoint = endpoint
        self.token = token
        self.clock = clock
        self.sender = _new_sender(endpoint, token)
        self._closing: set[asyncio.Task[None]] = set()

    async def configure(self, endpoint: config.Endpoint) -> bool:
        """Apply a reloaded endpoint and re-read its token; return whether the token changed.

        A token that cannot be read or has expired is refused, with the reason logged, and
        the one already loaded is kept.
        """
        token = self.token
        now = self.clock.now()
        try:
            fresh = await asyncio.to_thread(auth.load_token, endpoint.token)
        except TokenError as e:
            log.error("reload: %s; keeping the token already loaded", e)
        else:
            if fresh.expired(now):
                log.error("reload: %s; keeping the token already loaded",
                          auth.describe_expiry(fresh, now))
            else:
                token = fresh
        changed = token.value != self.token.value
        old, self.endpoint, self.token = self.endpoint, endpoint, token
        if (old.url, old.timeout, old.concurrency) != (endpoint.url, endpoint.timeout,
                                                       endpoint.concurrency):
            previous = self.sender
            self.sender = _new_sender(endpoint, token)
            task = asyncio.create_task(_close_later(previous, old.timeout + 1))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            self.sender.set_token(token)
        return changed

    async def reread(self) -> bool:
        """Read the token source again; take and return True for a new, unexpired token."""
        try:
            fresh = await asyncio.to_thread(auth.load_token, self.endpoint.token)
        except TokenError:
            return False
        if fresh.value == self.token.value or fresh.expired(self.clock.now()):
            return False
        self.token = fresh
        self.sender.set_token(fresh)
        return True

    def warn(self, now: datetime) -> None:
        """Log an expired token as an error and one about to expire as a warning."""
        if self.token.expired(now):
            log.error("%s: deliveries will be refused (401) until a new token is loaded",
                      auth.describe_expiry(self.token, now))
        elif self.token.expires_soon(now):
            log.warning("%s: get a new one from the console's Settings page and reload",
                        auth.describe_expiry(self.token, now))

    async def aclose(self) -> None:
        """Close the sender and any old ones still finishing their requests."""
        await self.sender.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)


def _new_sender(endpoint: config.Endpoint, token: Token) -> Sender:
    return Sender(endpoint.url, token, timeout=endpoint.timeout,
                  concurrency=endpoint.concurrency, ca_bundle=endpoint.ca_bundle)


async def _close_later(sender: Sender, delay: float) -> None:
    await asyncio.sleep(delay)
    await sender.aclose()
