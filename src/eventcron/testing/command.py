"""The ``eventcron sink`` command: run a Sink until a signal, logging each request.

Holds ``serve``, which owns the process-facing side: SIGINT/SIGTERM handlers, the
"listening" line on stdout, one line per request on stderr and the exit code. Touches the
signal handlers of the running loop (main thread only) and the streams it is given.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TextIO

from eventcron.testing.faults import Faults
from eventcron.testing.records import Received, format_record
from eventcron.testing.sink import DEFAULT_HOST, DEFAULT_PATH, Sink

SECRET_ENV: Final = "EVENTCRON_SINK_SECRET"  # noqa: S105 - a variable's name, not a secret
MAX_SECRET_BYTES: Final = 64 * 1024  # a secret file larger than this is not a secret


def sink_secret(*, given: str | None = None, file: Path | None = None,
                environ: Mapping[str, str] | None = None) -> str | None:
    """Choose the sink's HS256 secret from exactly one of its sources, or None.

    ``given`` is the command line's (``--secret``, or ``--secret-file`` read by the parser),
    ``file`` a path to read with :func:`read_secret_file`, ``environ`` defaults to the
    process environment for :data:`SECRET_ENV`. Raises :class:`ValueError` with a sentence
    when more than one is given or the file is unreadable.
    """
    env = os.environ if environ is None else environ
    from_env = env.get(SECRET_ENV) or None
    named = [what for what, value in (("--secret or --secret-file", given), ("a file", file),
                                      (f"${SECRET_ENV}", from_env)) if value is not None]
    if len(named) > 1:
        raise ValueError(f"the secret is given {len(named)} ways ({', '.join(named)});"
                         " give exactly one.")
    if file is not None:
        return read_secret_file(file)
    return given if given is not None else from_env


def read_secret_file(path: Path) -> str:
    """Read a secret file (one trailing newline dropped); raise :class:`ValueError` if unusable."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read the secret file {path}: {e.strerror or e}.") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ValueError(f"the secret file {path} is larger than"
                         f" {MAX_SECRET_BYTES // 1024} KiB; it does not look like a secret.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the secret file {path} is not UTF-8 text.") from None
    # Editors add a final newline; it is never part of the secret.
    return text.removesuffix("\n").removesuffix("\r")


async def serve(*, host: str = DEFAULT_HOST, port: int = 0, path: str = DEFAULT_PATH,
                secret: str | None = None, secret_file: Path | None = None,
                record_path: Path | None = None,
                faults: Faults | None = None, stdout: TextIO | None = None,
                stderr: TextIO | None = None, stop: asyncio.Event | None = None) -> int:
    """Run a sink until SIGINT/SIGTERM (or ``stop`` is set); return the exit code.

    The secret comes from ``secret``, ``secret_file`` or :data:`SECRET_ENV`, exactly one
    (see :func:`sink_secret`). Prints ``eventcron sink listening on <url>`` to stdout once
    listening and one line per request to stderr. Returns 0 after a clean stop, 1 if it
    cannot listen or write the record file, or a setting is invalid (e.g. a secret shorter
    than 32 bytes, or given two ways). Cancellation stops the sink cleanly and propagates.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    stop_event = stop if stop is not None else asyncio.Event()

    def log(record: Received) -> None:
        err.write(format_record(record) + "\n")
        err.flush()

    try:
        secret = sink_secret(given=secret, file=secret_file)
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
