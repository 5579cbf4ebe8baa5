"""A Sink in its own thread and event loop, for synchronous code and tests.

Holds ``SinkThread``, which starts a ``Sink`` on a private loop in a daemon thread and runs
its coroutines there. Touches only that thread and loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from eventcron.testing.faults import Faults
from eventcron.testing.records import Received
from eventcron.testing.sink import DEFAULT_HOST, DEFAULT_PATH, IDLE_TIMEOUT, POLL_INTERVAL, Sink

THREAD_TIMEOUT: Final = 10.0  # seconds SinkThread waits for the sink to start or stop

_T = TypeVar("_T")


class SinkThread:
    """A Sink running in its own thread and event loop, for synchronous code and tests."""

    def __init__(self, *, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                 secret: str | None = None, record_path: Path | None = None,
                 faults: Faults | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 on_request: Callable[[Received], None] | None = None) -> None:
        self.sink = Sink(host=host, port=port, path=path, secret=secret,
                         record_path=record_path, faults=faults, idle_timeout=idle_timeout,
                         on_request=on_request)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SinkThread:
        """Start the sink; return once it is listening (its error is raised here)."""
        if self._loop is not None:
            raise RuntimeError("the sink thread is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="eventcron-sink",
                                  daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self.call(self.sink.start())
        except BaseException:
            self._end_loop()
            raise
        return self

    def stop(self) -> None:
        """Stop the sink and its thread; idempotent."""
        if self._loop is None:
            return
        try:
            self.call(self.sink.stop())
        finally:
            self._end_loop()

    def call(self, coroutine: Coroutine[Any, Any, _T], timeout: float = THREAD_TIMEOUT) -> _T:
        """Run ``coroutine`` on the sink's loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the sink thread is not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def go_down(self) -> None:
        """Simulate an outage now (see ``Sink.go_down``)."""
        self.call(self.sink.go_down())

    def come_up(self) -> None:
        """End an outage (see ``Sink.come_up``)."""
        self.call(self.sink.come_up())

    def wait_for(self, predicate: Callable[[Sink], bool], timeout: float) -> bool:
        """Poll ``predicate(sink)`` until true (return True) or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not predicate(self.sink):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def set_reject_token(self, token: str | None) -> None:
        """Answer 401 to requests bearing exactly ``token`` (None: stop rejecting)."""
        self.sink.set_reject_token(token)

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return self.sink.url

    @property
    def port(self) -> int:
        """The port the sink listens on."""
        return self.sink.port

    @property
    def records(self) -> list[Received]:
        """The sink's records (appended by the sink's thread)."""
        return self.sink.records

    @property
    def faults(self) -> Faults:
        """The sink's fault settings."""
        return self.sink.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.sink.faults = faults

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _end_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(THREAD_TIMEOUT)
