"""What the audit log keeps of an applied plan: the file, without the ledger's password."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventcron.ledger import Ledger
from eventcron.service.audit import Audit
from tests.unit.fakes import FakeClock, ledger_thread, write_config


def test_the_recorded_file_hides_the_database_password(memory_ledger: Ledger,
                                                       tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '- {id: s, event_type: "e:s", every: 1h, users: [u1]}',
                       extra='database: "postgresql+psycopg://eventcron:s3cret-pw@db/x"\n')
    assert "s3cret-pw" in cfg.source

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            change = await Audit(db, FakeClock(), "me").started(cfg, 0)
            assert change.added == ("s",)
            record = memory_ledger.last_applied_plan()
            assert record is not None and record.content is not None
            assert "s3cret-pw" not in record.content
            assert "postgresql+psycopg://eventcron:***@db/x" in record.content
            assert record.change == {"added": ["s"], "removed": [], "changed": {},
                                     "retimed": [], "enabled": [], "disabled": [],
                                     "cancelled": 0}

    asyncio.run(scenario())
