"""The ``eventcron sink`` command: run a Sink until a signal, logging each request.

Holds ``serve``, which owns the process-facing side: SIGINT/SIGTERM handlers, the
"listening" line on stdout, one line per request on stderr and the exit code. Touches the
signal handlers of the running loop (main thread only) and the streams it is given.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TextIO

from eventcron.testing.faults import Faults
from eventcron.testing.records import Received, format_record
from eventcron.testing.sink import DEFAULT_HOST, DEFAULT_PATH, Sink


async def serve(*, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                secret: str | None = None, record_path: Path | None = None,
                faults: Faults | None = None, stdout: TextIO | None = None,
                stderr: TextIO | None = None, stop: asyncio.Event | None = None) -> int:
    """Run a sink until SIGINT/SIGTERM (or ``stop`` is set); return the exit code.

    Prints ``eventcron sink listening on <url>`` to stdout once listening and one line per
    request to stderr. Returns 0 after a clean stop, 1 if it cannot listen or write the
    record file, or a setting is invalid (e.g. a secret shorter than 32 bytes). Cancellation
    stops the sink cleanly and propagates.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    stop_event = stop if stop is not None else asyncio.Event()

    def log(record: Received) -> None:
        err.write(format_record(record) + "\n")
        err.flush()

    try:
        sink = Sink(host=host, port=port, path=path, secret=secret, record_path=record_path,
                    faults=faults, on_request=log)
    except ValueError as error:
        err.write(f"eventcron sink: {error}\n")
        err.flush()
        return 1
    try:
        await sink.start()
    except OSError as error:
        what = f"write {error.filename}" if error.filename else f"listen on {host}:{port}"
        err.write(f"eventcron sink: cannot {what}: {error.strerror or error}\n")
        err.flush()
        return 1
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop_event.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: whoever runs us decides when to stop
    try:
        out.write(f"eventcron sink listening on {sink.url}\n")
        out.flush()
        await stop_event.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await sink.stop()
    return 0
