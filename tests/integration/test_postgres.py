"""PostgreSQL as the ledger: losing connections mid-campaign loses nothing, sends nothing twice."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from eventcron.ledger import Filters, Ledger
from eventcron.testing import Faults
from tests.integration.harness import running, soon
from tests.pg import postgres_url, reset_postgres

pytestmark = pytest.mark.postgres

USERS = 1500


@pytest.mark.slow
def test_connection_loss_is_survived_without_loss_or_duplicates(tmp_path: Path) -> None:
    base = postgres_url()
    reset_postgres(base)
    name = f"eventcron-loss-{uuid.uuid4().hex[:8]}"
    url = f"{base}{'&' if '?' in base else '?'}application_name={name}"
    killer = create_engine(base)
    killed = 0
    stop = threading.Event()

    def kill_connections() -> None:
        nonlocal killed
        while not stop.wait(0.3):
            with killer.begin() as conn:
                killed += len(conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"), {"name": name}).all())

    (tmp_path / "people.csv").write_text(
        "app_user_id\n" + "".join(f"p{i:05d}\n" for i in range(USERS)))
    at = soon()

    async def scenario() -> None:
        body = f"""
        database: "{url}"
        audiences:
          people: {{file: people.csv}}
        schedules:
          - {{id: loss, event_type: "a:b", at: "{at}", audience: people}}
        """
        async with running(tmp_path, body, delivery="claim_lease: 5s",
                           faults=Faults(latency=0.01)) as run:
            await run.until(lambda: len(run.sink.delivered()) >= 100, within=30)
            thread = threading.Thread(target=kill_connections)
            thread.start()
            await asyncio.sleep(4)
            stop.set()
            await asyncio.to_thread(thread.join, 30)
            await run.until(lambda: len(run.sink.delivered()) >= USERS, within=120)
            await run.until(lambda: Counter(r.status for r in run.rows()) ==
                            Counter({"delivered": USERS}), within=60)
            keys = run.sink.delivered_keys()
        assert killed >= 3  # connections really were cut, several times
        assert len(keys) == USERS
        assert max(keys.values()) == 1  # nothing sent twice because of it

    try:
        asyncio.run(scenario())
    finally:
        stop.set()
        killer.dispose()
    ledger = Ledger.open(base)
    try:
        assert len(ledger.rows(Filters())) == USERS
    finally:
        ledger.close()
        reset_postgres(base)
