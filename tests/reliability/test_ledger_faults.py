"""The ledger locked by another process, and the disk full: keep running, lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from eventcron.ledger import Ledger
from eventcron.testing import Faults, Sink
from tests.integration.harness import SECRET, running, soon
from tests.reliability.invariants import check

DELIVERY = """
initial_backoff: 50ms
max_backoff: 500ms
"""


def campaign_body(at: str, users: int, extra: str = "") -> str:
    names = ", ".join(f"c{i:04d}" for i in range(users))
    return f"""
    schedules:
      - {{id: campaign, event_type: "r:t", at: "{at}", users: [{names}]}}
{extra}    """


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_a_ledger_locked_for_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    users = 400
    at = soon()

    async def scenario() -> Sink:
        sink = Sink(secret=SECRET, faults=Faults(latency=0.01))
        await sink.start()
        try:
            async with running(tmp_path, campaign_body(at, users), delivery=DELIVERY,
                               sink=sink) as run:
                await run.until(lambda: len(run.sink.delivered()) >= 50)
                held = threading.Event()

                def hold() -> None:
                    conn = sqlite3.connect(str(tmp_path / "eventcron.db"), timeout=30)
                    conn.execute("BEGIN EXCLUSIVE")
                    held.set()
                    time.sleep(12)  # the ledger's busy timeout is 10 s
                    conn.rollback()
                    conn.close()

                thread = threading.Thread(target=hold)
                thread.start()
                await asyncio.to_thread(held.wait, 30)
                await asyncio.to_thread(thread.join, 60)  # locked for 12 s
                assert not run.task.done()  # still running, not crashed
                await run.until(lambda: sum(1 for r in run.rows()
                                            if r.status == "delivered") == users, within=60)
        finally:
            await sink.stop()
        return sink

    sink = asyncio.run(scenario())
    report = check(f"sqlite:///{tmp_path / 'eventcron.db'}",
                   [("campaign", f"c{i:04d}") for i in range(users)],
                   [(r.idempotency_key, r.status, r.app_user_id) for r in sink.records],
                   repeats="never")
    print(f"\nlocked 12 s: {report.line()}")
    assert report.delivered == users


@contextlib.contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[tuple[Path, str]]:
    """A size-limited tmpfs when the machine allows mounting one (root), else no limit.

    Yields the folder and how "disk full" is produced: "tmpfs" (a real full file system)
    or "max_page_count" (SQLite's own size cap, which fails writes with SQLITE_FULL).
    """
    mount = folder / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(mount)], capture_output=True, check=False).returncode == 0
    try:
        yield mount, ("tmpfs" if mounted else "max_page_count")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> int:
    """Fill the file system holding ``path`` until it is full; return bytes written."""
    written = 0
    block = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:  # unbuffered: nothing is left to fail when the file is closed
            written += os.write(fd, block)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_a_full_disk_is_survived_and_recovered_from(tmp_path: Path) -> None:
    users = 1500
    at = soon()
    with small_disk(tmp_path, 24) as (disk, how):
        db = disk / "eventcron.db"
        extra = "      - {id: tick, event_type: \"r:tick\", every: 2s, users: [t1, t2]}\n"
        body = campaign_body(at, users, extra).replace(
            "    schedules:", f"    database: \"sqlite:///{db}\"\n    schedules:", 1)

        async def scenario() -> Sink:
            sink = Sink(secret=SECRET, faults=Faults(latency=0.01))
            await sink.start()
            try:
                async with running(tmp_path, body, delivery=DELIVERY, sink=sink) as run:
                    await run.until(lambda: len(run.sink.delivered()) >= 200, within=30)
                    if how == "tmpfs":
                        await asyncio.to_thread(fill, disk / "filler")
                    else:
                        cap_growth(run.daemon.db.ledger.engine, db)
                    full_at = len(run.sink.delivered())
                    await asyncio.sleep(6)  # full: writes fail, the daemon must carry on
                    assert not run.task.done()
                    during = len(run.sink.delivered()) - full_at
                    if how == "tmpfs":
                        os.unlink(disk / "filler")  # space returns
                    else:
                        uncap_growth(run.daemon.db.ledger.engine)
                    await run.until(lambda: sum(1 for r in run.rows()
                                                if r.schedule_id == "campaign"
                                                and r.status == "delivered") == users,
                                    within=120)
                    print(f"\ndisk full ({how}) for 6 s; {during} deliveries went out while"
                          " it was (answers kept in memory until they could be written)")
            finally:
                await sink.stop()
            return sink

        sink = asyncio.run(scenario())

        async def restart() -> None:
            # A fire still waiting to be retried at shutdown is caught up at the next start.
            async with running(tmp_path, body, delivery=DELIVERY, sink=sink) as run:
                await asyncio.sleep(1)
                assert not run.task.done()

        async def with_sink() -> None:
            await sink.start()
            try:
                await restart()
            finally:
                await sink.stop()

        asyncio.run(with_sink())
        url = f"sqlite:///{db}"
        received = [(r.idempotency_key, r.status, r.app_user_id) for r in sink.records
                    if r.app_user_id and r.app_user_id.startswith("c")]
        report = check(url, [("campaign", f"c{i:04d}") for i in range(users)], received,
                       repeats="never")
        print(f"after the disk filled up: {report.line()}")
        assert report.delivered == users
        # The schedule that kept firing while the disk was full lost no occurrence: each is
        # fired, or (caught up after the restart under catch_up_mode latest) skipped with
        # its reason recorded.
        ledger = Ledger.open(url)
        try:
            ticks = {f.scheduled_for: f for f in ledger.fires_of("tick", limit=1000)}
        finally:
            ledger.close()
        fired = sorted(t for t, f in ticks.items() if f.status == "fired")
        assert len(fired) >= 5
        for t in range(fired[0], fired[-1] + 1, 2000):
            assert t in ticks, f"occurrence {t} of tick has no record"
            assert ticks[t].status == "fired" or ticks[t].reason, ticks[t]


_CAP: dict[str, int] = {}


def cap_growth(engine: object, db: Path) -> None:
    """Fallback "disk full": SQLite refuses to grow the file past its current size."""
    pages = sqlite3.connect(str(db)).execute("PRAGMA page_count").fetchone()[0]
    _CAP["pages"] = pages

    def on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={_CAP['pages']}")

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # type: ignore[attr-defined]


def uncap_growth(engine: object) -> None:
    _CAP["pages"] = 1_073_741_823
    engine.dispose()  # type: ignore[attr-defined]
