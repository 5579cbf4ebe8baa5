"""Helpers for acceptance tests: the sink and the daemon as real processes."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from eventcron.ledger import PASSED_BEFORE_LOAD, Ledger, LedgerError, deliveries
from eventcron.testing import make_token
from tests.acceptance.conftest import eventcron_command

SECRET = secrets.token_urlsafe(32)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """A running eventcron subprocess with its output files."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)


# Every process start() made, so that reap() can end those a failing test left running.
_STARTED: list[Proc] = []


def start(args: Sequence[str], folder: Path, name: str,
          env: dict[str, str] | None = None) -> Proc:
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    # The child keeps its own copies of the descriptors; the parent's close here.
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen([eventcron_command(), *args], cwd=folder, env=clean_env(env),
                                 stdout=stdout, stderr=stderr)
    proc = Proc(popen, out, err)
    _STARTED.append(proc)
    return proc


def reap() -> list[str]:
    """Kill and wait for every started process still running; return their names.

    Called after every test (tests/conftest.py), pass or fail: a process left running
    would hold its port and files, and its Popen would warn (an error under
    ``filterwarnings = error``) in whichever test happens to collect it.
    """
    left: list[str] = []
    while _STARTED:
        proc = _STARTED.pop()
        if proc.popen.poll() is None:
            left.append(proc.err.stem)
            proc.popen.kill()
        proc.popen.wait(30)
    return left


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def at_time(ahead: float) -> datetime:
    """An ``at:`` instant at least ``ahead`` seconds from now, in whole seconds.

    Whole seconds, so the time written in the file, the nominal time in the ledger's key
    and the ``--occurrence`` given to ``eventcron fire`` are one and the same instant.
    """
    return (datetime.now(UTC) + timedelta(seconds=ahead + 1)).replace(microsecond=0)


def rfc3339(t: datetime) -> str:
    """``t`` as written in schedule files and given to ``--occurrence``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_ready(proc: Proc) -> bool:
    """Tell whether ``eventcron run`` says it is ready (its plan loaded, its catch-up done)."""
    return "eventcron ready" in proc.stderr()


@dataclass
class Fired:
    """What ``eventcron fire`` reported: rows it added, rows that were already there."""

    new: int
    existing: int
    output: str


# "campaign at 2026-...Z (...): added 2,000 new rows; 0 rows already existed."
_ADDED = re.compile(r"added ([\d,]+) new rows?; ([\d,]+) rows? already existed")


def fire(folder: Path, schedule_id: str, occurrence: datetime, *,
         env: dict[str, str] | None = None, within: float = 120) -> Fired:
    """Run ``eventcron fire SCHEDULE --occurrence T`` in ``folder`` until it succeeds.

    The command is idempotent (the ledger's unique key adds nothing for an occurrence that
    is already enqueued, by a daemon or by an earlier try), so trying it again after a
    failure, for instance a ledger locked by a daemon, is safe.
    """
    argv = [eventcron_command(), "fire", schedule_id, "--occurrence", rfc3339(occurrence)]
    deadline = time.monotonic() + within
    while True:
        result = subprocess.run(argv, cwd=folder, env=clean_env(env), capture_output=True,
                                text=True, timeout=within, check=False)
        output = result.stdout + result.stderr
        if result.returncode == 0:
            counts = [(int(a.replace(",", "")), int(e.replace(",", "")))
                      for a, e in _ADDED.findall(output)]
            assert counts, f"eventcron fire said nothing about rows:\n{output}"
            return Fired(sum(a for a, _ in counts), sum(e for _, e in counts), output)
        if time.monotonic() > deadline:
            raise AssertionError(f"eventcron fire {schedule_id} kept failing:\n{output}")
        time.sleep(1)


def passed_before_load(url: str, schedule_id: str, occurrence: datetime) -> bool:
    """Tell whether the ledger records ``occurrence`` as skipped because it passed before load."""
    try:
        ledger = Ledger.open(url, create=False)
    except LedgerError:
        return False  # no daemon has opened the ledger yet
    try:
        return any(r.scheduled_for == round(occurrence.timestamp() * 1000)
                   and r.status == "skipped" and r.reason == PASSED_BEFORE_LOAD
                   for r in ledger.fires_of(schedule_id))
    finally:
        ledger.close()


def fire_when_due(folder: Path, schedule_id: str, occurrence: datetime, *,
                  env: dict[str, str] | None = None) -> Fired:
    """Once ``occurrence`` has passed, fire it with ``eventcron fire`` if no daemon could.

    Call it once the daemons are ready. A daemon ready before the occurrence's time fires it
    itself (and the test then checks that it did); only when the ledger says every daemon
    loaded its plan too late, "passed before the schedule was loaded" (a loaded machine),
    does this send it, as an operator would. Returns what ``fire`` did (nothing if unused).
    """
    wait_for(lambda: datetime.now(UTC) > occurrence, 3600, f"{rfc3339(occurrence)} to pass")
    url = (env or {}).get("EVENTCRON_DATABASE_URL") or f"sqlite:///{folder / 'eventcron.db'}"
    if not passed_before_load(url, schedule_id, occurrence):
        return Fired(0, 0, "")
    return fire(folder, schedule_id, occurrence, env=env)


@dataclass
class SinkProcess:
    """`eventcron sink` in a subprocess, recording to a JSON-lines file."""

    proc: Proc
    record: Path
    url: str
    _cache: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def records(self) -> list[dict[str, Any]]:
        with self.record.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            self._cache.append(json.loads(line))
        self._offset += end
        return self._cache

    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["status"] == 200]


def start_sink(folder: Path, *extra: str) -> SinkProcess:
    record = folder / "received.jsonl"
    # --secret=VALUE: a secret may start with "-", which argparse would take for an option.
    proc = start(["sink", "--port", "0", f"--secret={SECRET}", "--record", str(record), *extra],
                 folder, "sink")
    wait_for(lambda: "listening on" in proc.stdout(), 20, "the sink to listen")
    url = proc.stdout().split("listening on", 1)[1].split()[0]
    wait_for(record.exists, 5, "the record file")
    return SinkProcess(proc, record, url)


def write_config(folder: Path, url: str, schedules: str, *, audiences: str = "") -> Path:
    token = folder / "token"
    token.write_text(make_token(SECRET, expires_in=86400, now=time.time()))
    token.chmod(0o600)
    path = folder / "schedules.yaml"
    path.write_text(
        "version: 1\n"
        f"endpoint:\n  url: {url}\n  token: {{file: token}}\n  timeout: 5s\n"
        "  concurrency: 32\n"
        "delivery:\n  initial_backoff: 200ms\n  max_backoff: 1s\n"
        + (f"audiences:\n{audiences}" if audiences else "")
        + f"schedules:\n{schedules}")
    return path


def claimed_by_pid(url: str, pid: int) -> set[str]:
    """Event ids held (claimed, answer not recorded) by the instance with this process id."""
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as conn:
            rows = conn.execute(select(deliveries.c.event_id, deliveries.c.claimed_by).where(
                deliveries.c.status == "pending", deliveries.c.claimed_by.is_not(None))).all()
    finally:
        ledger.close()
    return {event_id for event_id, owner in rows if owner.split(":")[1] == str(pid)}
