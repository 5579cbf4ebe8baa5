"""An audience edited to list a user twice is refused on reload; the old plan keeps running."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.integration.harness import running


def test_a_csv_edited_to_repeat_a_user_keeps_the_old_plan(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="eventcron")
    csv = tmp_path / "users.csv"
    csv.write_text("app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\n")
    body = """
    audiences:
      people: {file: users.csv}
    schedules:
      - {id: s, event_type: "a:b", cron: "0 9 * * *", timezone: user, audience: people}
    """

    async def scenario() -> None:
        async with running(tmp_path, body) as run:
            before = run.daemon.firing.state
            assert sorted(run.daemon.firing.state.jobs) == ["s@Asia/Tokyo", "s@UTC"]
            csv.write_text("app_user_id,timezone\nu_1,Asia/Tokyo\nu_2,UTC\nu_1,UTC\n")
            assert not await run.daemon.reload("test")
            assert run.daemon.firing.state is before

    asyncio.run(scenario())
    errors = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{csv}:4: the user 'u_1' is listed twice (first at {csv}:2)." in errors
    # The file to fix is named: the CSV, not the schedule file that refers to it.
    assert (f"reload (test): the audience file {csv} is not valid, still running the previous"
            " version:") in errors
