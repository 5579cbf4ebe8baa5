"""The audit log of plans and `eventcron diff`, against a real daemon and a real ledger."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventcron.ledger import Filters, Ledger, NewRow, PlanRecord
from tests.integration.harness import running, write_schedule

BODY = """
schedules:
  - {id: keep, event_type: "a:k", cron: "0 9 * * *", users: [k1, k2]}
  - {id: drop, event_type: "a:d", every: 1h, users: [d1, d2, d3]}
"""
EDITED = """
schedules:
  - {id: keep, event_type: "a:k", cron: "30 8 * * *", users: [k1, k2]}
  - {id: fresh, event_type: "a:f", cron: "0 12 * * *", users: [f1]}
"""


def plans(url: str) -> list[PlanRecord]:
    ledger = Ledger.open(url)
    try:
        return ledger.plan_log()
    finally:
        ledger.close()


def eventcron(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventcron", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_start_reload_and_refusal_are_recorded_with_what_changed(tmp_path: Path,
                                                                 database_line: str) -> None:
    database = database_line
    refused_problems: list[int] = []
    urls: list[str] = []

    async def scenario() -> None:
        async with running(tmp_path, database + BODY) as run:
            urls.append(run.db_url)
            url = run.db_url
            (started,) = plans(url)
            assert (started.outcome, started.instance, started.file) == (
                "applied", run.daemon.owner, str(run.path.absolute()))
            assert started.change is not None and started.change["added"] == ["drop", "keep"]
            # Rows the next edit will cancel: `drop` fired by hand.
            ledger = Ledger.open(url)
            try:
                ledger.enqueue([NewRow("drop", u, "a:d", 0, "{}", 10**13, 10**13 + 1)
                                for u in ("d1", "d2", "d3")], 0)
            finally:
                ledger.close()

            write_schedule(tmp_path, run.sink.url, database + EDITED)
            assert await run.daemon.reload("test")
            await run.until(lambda: len(plans(url)) == 2)  # written in the background
            reloaded = plans(url)[0]
            assert reloaded.outcome == "applied"
            assert reloaded.change == {
                "added": ["fresh"], "removed": ["drop"], "changed": {"keep": ["cron"]},
                "retimed": ["keep"], "enabled": [], "disabled": [], "cancelled": 3}
            assert [r.status for r in run.rows(Filters(schedule=("drop",)))] == [
                "cancelled"] * 3

            run.path.write_text(run.path.read_text() + "  - {id: bad, cron: '61 * * * *'}\n")
            assert not await run.daemon.reload("test")
            await run.until(lambda: len(plans(url)) == 3)
            refused = plans(url)[0]
            assert (refused.outcome, refused.change) == ("refused", None)
            assert refused.problems >= 2  # no event_type, a minute out of range
            refused_problems.append(refused.problems)

    asyncio.run(scenario())
    ledger = Ledger.open(urls[0])
    try:
        last = ledger.last_applied_plan()
    finally:
        ledger.close()
    assert last is not None and last.content is not None and "fresh" in last.content

    # The same from the command line, from the ledger alone (the file is invalid now).
    listed = eventcron("--database", urls[0], "history", "--changes", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [(e["outcome"], e["problems"]) for e in entries] == [
        ("refused", refused_problems[0]), ("applied", 0), ("applied", 0)]
    assert {k: entries[1][k] for k in ("added", "removed", "changed", "cancelled")} == {
        "added": ["fresh"], "removed": ["drop"], "changed": {"keep": ["cron"]}, "cancelled": 3}
    assert entries[2]["added"] == ["drop", "keep"] and entries[0]["at"].endswith("Z")
    text = eventcron("--database", urls[0], "history", "--changes", cwd=tmp_path)
    assert "refused" in text.stdout and "+fresh; -drop; ~keep (cron); 3 pending events" \
        " cancelled" in text.stdout


@pytest.mark.slow
def test_diff_compares_an_edit_with_the_plan_last_applied(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, BODY):
            pass  # ran once: the ledger now holds the applied plan

    asyncio.run(scenario())
    applied = (tmp_path / "schedules.yaml").read_text()
    edited = tmp_path / "edited.yaml"
    edited.write_text(applied.replace('every: 1h, users: [d1, d2, d3]',
                                      'every: 1h, users: [d1, d2, d3], enabled: false'))
    result = eventcron("--config", "schedules.yaml", "diff", "edited.yaml", "--json",
                       "--days", "1", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["schedules"] == {"added": [], "removed": [],
                                   "changed": {"drop": ["enabled"]}, "unchanged": 1}
    removed = report["occurrences"]["drop"]["removed"]
    assert len(removed) == 24 and {o["events"] for o in removed} == {3}
    assert (report["events_added"], report["events_removed"]) == (0, 72)

    text = eventcron("--config", "schedules.yaml", "diff", "edited.yaml", "--days", "1",
                     cwd=tmp_path)
    assert text.returncode == 1 and "~ drop, disabled: -24 occurrences (72 events)" in text.stdout

    same = eventcron("--config", "schedules.yaml", "diff", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "no difference." in same.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text(applied + "  - {id: x, cron: '* * * * *'}\n")
    trouble = eventcron("--config", "schedules.yaml", "diff", "broken.yaml", cwd=tmp_path)
    assert trouble.returncode == 2
    assert "broken.yaml" in trouble.stderr and "Traceback" not in trouble.stderr


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """Yield an empty ledger on each backend (see conftest's ``ledger_url``)."""
    opened = Ledger.open(ledger_url)
    yield opened
    opened.close()


def test_the_plan_log_keeps_applied_and_refused_plans_newest_first(ledger: Ledger) -> None:
    ledger.record_plan(PlanRecord(1_000, "i1", "/etc/s.yaml", "aa", "applied",
                                  content="version: 1\n", schedules={"s": {"cron": "x"}},
                                  change={"added": ["s"], "cancelled": 0}))
    ledger.record_plan(PlanRecord(2_000, "i1", "/etc/s.yaml", "bb", "refused", problems=3))
    ledger.record_plan(PlanRecord(2_000, "i2", "/etc/s.yaml", "cc", "applied",
                                  content="version: 1\n#2\n", schedules={}, change={}))
    log = ledger.plan_log()
    assert [(r.sha256, r.outcome, r.problems) for r in log] == [
        ("cc", "applied", 0), ("bb", "refused", 3), ("aa", "applied", 0)]
    assert all(r.content is None for r in log)  # the log leaves contents out
    assert [r.sha256 for r in ledger.plan_log(since=2_000)] == ["cc", "bb"]
    assert [r.sha256 for r in ledger.plan_log(limit=1)] == ["cc"]
    last = ledger.last_applied_plan()
    assert last is not None and (last.sha256, last.content, last.schedules) == (
        "cc", "version: 1\n#2\n", {})


def test_old_plans_are_pruned_but_the_one_applied_last_stays(ledger: Ledger) -> None:
    for at, outcome in ((1_000, "applied"), (2_000, "refused"), (3_000, "applied"),
                        (9_000, "refused"), (20_000, "refused")):
        ledger.record_plan(PlanRecord(at, "i", "/f", f"s{at}", outcome,  # type: ignore[arg-type]
                                      content="x" if outcome == "applied" else None))
    assert ledger.prune_plans(10_000) == 3
    assert [r.sha256 for r in ledger.plan_log()] == ["s20000", "s3000"]
    last = ledger.last_applied_plan()
    assert last is not None and last.sha256 == "s3000"
