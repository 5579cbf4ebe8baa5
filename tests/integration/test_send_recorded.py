"""`eventcron send` is recorded in the ledger, under schedule ``-`` (issue 14).

The real command runs as a process against a real sink over loopback; ``deliveries``,
``history``, ``status`` and ``replay`` then run as processes on the same ledger, an SQLite
file or PostgreSQL. A running daemon (in-process, tests/integration/harness.py) delivers a
real schedule's rows beside the sends and never touches theirs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventcron import config
from eventcron.ledger import (
    EVENT_NAMESPACE,
    SEND_SCHEDULE,
    UNANSWERED,
    Filters,
    Ledger,
    LedgerError,
    Row,
    send_event_id,
)
from eventcron.problems import InvalidInput
from eventcron.testing import Faults, SinkThread
from tests.acceptance.conftest import eventcron_command
from tests.acceptance.processes import wait_for
from tests.integration.harness import SECRET, running, soon, write_schedule, write_token
from tests.pg import postgres_url, reset_postgres

DAILY = """
schedules:
  - {id: daily, event_type: "reminder:daily", cron: "0 9 * * *", users: [u1]}
"""
NONE_SENT = {"pending": 0, "delivered": 0, "failed": 0, "expired": 0, "cancelled": 0,
             "suppressed": 0}


def eventcron(cwd: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """Run the installed ``eventcron ARGS`` in ``cwd``, without the caller's EVENTCRON_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
    clean.update(env or {})
    return subprocess.run([eventcron_command(), *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=60, check=False)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """Return a command's JSON output, after checking it succeeded."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def closed_port() -> int:
    """Return a loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def sent_to(url: str) -> set[str]:
    """Return the users of the sends recorded so far; none while the ledger is being made."""
    try:
        return {r.app_user_id for r in rows_of(url)}
    except LedgerError:  # the file is there, its tables not yet
        return set()


def rows_of(url: str, schedule: str = SEND_SCHEDULE) -> list[Row]:
    """Read a schedule's rows through a connection of this test's own."""
    ledger = Ledger.open(url, create=False)
    try:
        return ledger.rows(Filters(schedule=(schedule,)))
    finally:
        ledger.close()


@pytest.fixture
def sink() -> Iterator[SinkThread]:
    """A sink on loopback that checks the token; it records every request."""
    with SinkThread(secret=SECRET) as running_sink:
        yield running_sink


def check_a_delivered_send(folder: Path, sink: SinkThread, url: str,
                           database: tuple[str, ...] = ()) -> None:
    """Send one event and find it, as the endpoint saw it, in every command that reads."""
    sent = eventcron(folder, *database, "send", "--user", "u_42", "--event-type",
                     "user:location:change", "--data", '{"city": "Berlin", "a": [1, 2]}')
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("delivered: HTTP 200, event ")
    assert "; recorded in the ledger " in sent.stdout
    (got,) = sink.sink.records
    assert (got.status, got.app_user_id, got.event_type, got.data) == (
        200, "u_42", "user:location:change", {"city": "Berlin", "a": [1, 2]})

    (row,) = as_json(eventcron(folder, *database, "deliveries", "--json"))
    assert row["event_id"] == got.idempotency_key and row["event_id"] in sent.stdout
    assert (row["schedule"], row["app_user_id"], row["event_type"], row["status"],
            row["attempts"], row["last_status_code"], row["last_error"], row["data"]) == (
        "-", "u_42", "user:location:change", "delivered", 1, 200, None,
        {"city": "Berlin", "a": [1, 2]})
    assert row["delivered_at"] is not None and row["next_attempt_at"] is None
    # The id is of the content and the time: the key order of --data is not content.
    (stored,) = rows_of(url)
    assert row["event_id"] == send_event_id("u_42", "user:location:change",
                                            stored.scheduled_for, {"a": [1, 2], "city": "Berlin"})
    assert as_json(eventcron(folder, *database, "deliveries", "--schedule", "-", "--json")) == [
        row]
    assert as_json(eventcron(folder, *database, "deliveries", "--schedule", "daily",
                             "--json")) == []
    table = eventcron(folder, *database, "deliveries")
    assert " delivered " in table.stdout and "- / u_42 / user:location:change" in table.stdout

    (entry,) = as_json(eventcron(folder, *database, "history", "--json"))
    assert entry["instance"].startswith("eventcron send by ")
    assert {k: entry[k] for k in ("schedule", "occurrence", "timezone", "outcome", "reason",
                                  "rows", "counts", "first_delivery_s")} == {
        "schedule": "-", "occurrence": row["scheduled_for"], "timezone": "UTC",
        "outcome": "fired", "reason": None, "rows": 1,
        "counts": {**NONE_SENT, "delivered": 1}, "first_delivery_s": entry["first_delivery_s"]}
    assert 0 <= entry["first_delivery_s"] < 60  # delivered when the answer came
    assert as_json(eventcron(folder, *database, "history", "--schedule", "-", "--json")) == [
        entry]
    history = eventcron(folder, *database, "history")
    assert "-@UTC" in history.stdout and " send by " in history.stdout

    state = as_json(eventcron(folder, *database, "status", "--json"))
    assert state["counts"] == state["sends"] == {**NONE_SENT, "delivered": 1}
    # `-` is no schedule of the plan: the listing is the file's schedules, untouched.
    assert [(s["id"], s["counts"], s["last_fire"]) for s in state["schedules"]] == [
        ("daily", NONE_SENT, None)]
    text = eventcron(folder, *database, "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[2].startswith("  daily: cron, UTC, 1 user; last fire never, next ")
    assert lines[3] == (f"  - (eventcron send): last send {row['scheduled_for']}; 1 delivered,"
                        " 0 failed")
    assert lines[4].startswith("Ledger: 0 pending, 1 delivered")


@pytest.mark.slow
def test_a_delivered_send_is_in_deliveries_history_and_status(tmp_path: Path,
                                                              sink: SinkThread) -> None:
    write_token(tmp_path)
    path = write_schedule(tmp_path, sink.url, DAILY)
    # The file names no ledger: the default beside it. A send never creates one (where it
    # looks for none, it looks in the wrong place): it refuses, sending nothing.
    url = config.load(path).database
    refused = eventcron(tmp_path, "send", "--user", "u_42", "--event-type", "a:b")
    assert refused.returncode == 1 and "there is no ledger at " in refused.stderr
    assert "Nothing was sent" in refused.stderr and sink.sink.records == []
    Ledger.open(url).close()  # as `eventcron run` creates it
    check_a_delivered_send(tmp_path, sink, url)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_send_is_recorded_on_postgresql(tmp_path: Path, sink: SinkThread) -> None:
    url = postgres_url()
    reset_postgres(url)
    try:
        write_token(tmp_path)
        write_schedule(tmp_path, sink.url, DAILY)
        Ledger.open(url).close()  # as `eventcron run` creates it
        check_a_delivered_send(tmp_path, sink, url, ("--database", url))
        assert not (tmp_path / "eventcron.db").exists()  # --database, not the default
    finally:
        reset_postgres(url)


@pytest.mark.slow
def test_a_send_the_endpoint_refuses_or_cannot_take_is_recorded_failed(
        tmp_path: Path) -> None:
    write_token(tmp_path)
    with SinkThread(secret=SECRET, faults=Faults(fail_keys={"u_bad": 422})) as refusing:
        path = write_schedule(tmp_path, refusing.url, DAILY)
        url = config.load(path).database
        Ledger.open(url).close()
        refused = eventcron(tmp_path, "send", "--user", "u_bad", "--event-type", "a:b")
    port = closed_port()
    write_schedule(tmp_path, f"http://127.0.0.1:{port}/api/v1/webhook/event", DAILY)
    unreachable = eventcron(tmp_path, "send", "--user", "u_2", "--event-type", "a:b")

    assert refused.returncode == 1 and unreachable.returncode == 1
    assert refused.stderr.startswith("eventcron: not delivered: HTTP 422"), refused.stderr
    assert unreachable.stderr.startswith(
        f"eventcron: not delivered: connection refused by 127.0.0.1:{port} (event ")
    for result in (refused, unreachable):
        assert result.stderr.rstrip().endswith(".db.")  # "recorded as failed in the ledger …"
        assert "recorded as failed in the ledger " in result.stderr
        assert "Traceback" not in result.stderr
    rows = {r["app_user_id"]: r for r in as_json(eventcron(
        tmp_path, "deliveries", "--schedule", "-", "--status", "failed", "--json"))}
    bad, down = rows["u_bad"], rows["u_2"]
    assert (bad["status"], bad["attempts"], bad["last_status_code"]) == ("failed", 1, 422)
    assert bad["last_error"].startswith("HTTP 422") and bad["event_id"] in refused.stderr
    assert (down["status"], down["attempts"], down["last_status_code"]) == ("failed", 1, None)
    assert down["last_error"] == f"connection refused by 127.0.0.1:{port}"
    history = as_json(eventcron(tmp_path, "history", "--schedule", "-", "--json"))
    assert [(e["outcome"], e["rows"], e["counts"]["failed"]) for e in history] == [
        ("fired", 1, 1), ("fired", 1, 1)]
    state = as_json(eventcron(tmp_path, "status", "--json"))
    assert state["counts"] == state["sends"] == {**NONE_SENT, "failed": 2}
    assert state["endpoint"]["last_error"] == down["last_error"]  # the endpoint's, latest
    # From the ledger alone, the sends are listed apart too, never as a schedule.
    alone = eventcron(tmp_path, "--database", url, "--config", "none.yaml", "status")
    assert alone.returncode == 0, alone.stderr
    lines = alone.stdout.splitlines()
    assert lines[1] == "Schedules in the ledger:"
    assert lines[2].startswith("  - (eventcron send): last send ")
    assert lines[2].endswith("; 0 delivered, 2 failed")
    alone_json = as_json(eventcron(tmp_path, "--database", url, "--config", "none.yaml",
                                   "status", "--json"))
    assert alone_json["schedules"] == [] and alone_json["sends"]["failed"] == 2

    # A send goes once: replay leaves it, and says so; naming it is refused.
    replay = eventcron(tmp_path, "replay", "--status", "failed")
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.splitlines() == [
        "0 failed events are pending again; a running eventcron sends them now.",
        "2 failed events of `eventcron send` (schedule -) are left as they are: a send goes"
        " once; run `eventcron send` again to resend."]
    named = eventcron(tmp_path, "replay", "--schedule", "-")
    assert named.returncode == 1
    assert named.stderr == ("eventcron: the events of `eventcron send` (schedule -) are never"
                            " replayed: each is sent once, by hand; run `eventcron send` again"
                            " to resend one.\n")
    assert {(r.status, r.attempts) for r in rows_of(url)} == {("failed", 1)}


@pytest.mark.slow
def test_a_ledger_that_cannot_take_the_record_stops_the_send(tmp_path: Path,
                                                             sink: SinkThread) -> None:
    write_token(tmp_path)
    write_schedule(tmp_path, sink.url, DAILY)
    nowhere = eventcron(tmp_path, "--database", str(tmp_path / "no" / "such" / "folder.db"),
                        "send", "--user", "u1", "--event-type", "a:b")
    # A ledger of a newer eventcron: readable, but not this version's to write.
    newer = tmp_path / "newer.db"
    ledger = Ledger.open(f"sqlite:///{newer}")
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE eventcron_meta SET value = '99'"
                             " WHERE key = 'schema_version'")
    ledger.close()
    refused = eventcron(tmp_path, "send", "--user", "u1", "--event-type", "a:b",
                        env={"EVENTCRON_DATABASE_URL": str(newer)})
    for result in (nowhere, refused):
        assert result.returncode == 1, result.stderr
        assert result.stderr.rstrip().endswith(
            "Nothing was sent: eventcron send records each event first, in the ledger"
            " `eventcron run` creates and uses.")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "there is no ledger at " in nowhere.stderr
    assert "schema version 99" in refused.stderr
    assert sink.sink.records == []


def test_an_expired_token_stops_the_send_before_the_ledger(tmp_path: Path,
                                                          sink: SinkThread) -> None:
    write_token(tmp_path, expires_in=-60)
    write_schedule(tmp_path, sink.url, DAILY)
    result = eventcron(tmp_path, "send", "--user", "u1", "--event-type", "a:b")
    # Exit 1, as send documents; "not starting" and 78 are the daemon's.
    assert result.returncode == 1, result.stderr
    assert "the token expired at" in result.stderr and "Nothing was sent." in result.stderr
    assert "starting" not in result.stderr.lower()
    assert sink.sink.records == [] and not list(tmp_path.glob("*.db"))


@pytest.mark.slow
def test_a_delivered_send_whose_outcome_cannot_be_recorded_says_so(tmp_path: Path) -> None:
    write_token(tmp_path)
    # The endpoint holds its answer long enough for the DELETE below on a busy machine: the
    # test takes that long, but cannot lose the race.
    with SinkThread(secret=SECRET, faults=Faults(latency=15)) as slow:
        path = write_schedule(tmp_path, slow.url, DAILY, timeout="45s")
        url = config.load(path).database
        Ledger.open(url).close()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
        proc = subprocess.Popen([eventcron_command(), "send", "--user", "u1", "--event-type",
                                 "a:b"], cwd=tmp_path, env=clean, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # While the endpoint holds its answer, the row goes (as an operator's DELETE would).
            wait_for(lambda: "u1" in sent_to(url), 30, "the send to be recorded")
            ledger = Ledger.open(url, create=False)
            with ledger.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM deliveries")
            ledger.close()
        except BaseException:
            proc.kill()  # no process left behind to fail a later test at garbage collection
            proc.communicate(timeout=30)
            raise
        stdout, stderr = proc.communicate(timeout=90)
        (got,) = slow.sink.records
    assert proc.returncode == 1 and stdout == ""
    assert stderr.startswith(f"eventcron: delivered: HTTP 200, event {got.idempotency_key} to"
                             " u1; but recording its outcome failed: the row of this send is"
                             " gone from the ledger "), stderr
    assert stderr.endswith(" (pruned or deleted meanwhile). The ledger does not have the"
                           " endpoint's answer.\n")


def test_the_ledger_refuses_a_second_send_of_one_key_and_counts_sends_of_one_instant(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url)
    try:
        at = 1_790_000_000_123
        first = ledger.begin_send("e1", "u1", "a:b", "{}", at, instance="eventcron send by x")
        ledger.begin_send("e2", "u2", "a:b", "{}", at, instance="eventcron send by y")
        with pytest.raises(LedgerError, match="already holds an event a:b sent to u1 at this"
                                              " millisecond; send it again"):
            ledger.begin_send("e3", "u1", "a:b", '{"x": 1}', at, instance="z")
        ledger.finish_send(first, "delivered", 202, None, at + 5)
        with pytest.raises(LedgerError, match="the row of this send is gone"):
            ledger.finish_send(first, "failed", 500, "HTTP 500", at + 6)  # already written
        (entry,) = ledger.history([SEND_SCHEDULE])
        rows = {r.app_user_id: r for r in ledger.rows(Filters())}
    finally:
        ledger.close()
    assert (entry.status, entry.rows, entry.counts["delivered"], entry.counts["failed"],
            entry.instance) == ("fired", 2, 1, 1, "eventcron send by x")
    assert (rows["u1"].status, rows["u1"].attempts, rows["u1"].last_status_code,
            rows["u1"].delivered_at) == ("delivered", 1, 202, at + 5)
    assert (rows["u2"].status, rows["u2"].attempts, rows["u2"].last_error) == (
        "failed", 0, UNANSWERED)


def test_the_event_id_is_of_the_sends_content_and_time() -> None:
    at = 1_790_000_000_123
    one = send_event_id("u1", "a:b", at, {"x": 1, "y": [2]})
    assert one == str(uuid.uuid5(EVENT_NAMESPACE, f"-\x1fa:b\x1f{at}\x1fu1\x1f"
                                                  '{"x":1,"y":[2]}'))
    assert one == send_event_id("u1", "a:b", at, {"y": [2], "x": 1})  # key order: no content
    others = {send_event_id("u1", "a:b", at, {"x": 2, "y": [2]}),
              send_event_id("u1", "a:b", at + 1, {"x": 1, "y": [2]}),
              send_event_id("u2", "a:b", at, {"x": 1, "y": [2]}),
              send_event_id("u1", "a:c", at, {"x": 1, "y": [2]})}
    assert len(others) == 4 and one not in others


def test_no_schedule_may_be_called_like_the_sends(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("version: 1\nschedules:\n"
                    "  - {id: ok, event_type: a, cron: '0 9 * * *', users: [u1]}\n"
                    "  - {id: '-', event_type: a, cron: '0 9 * * *', users: [u1]}\n")
    with pytest.raises(InvalidInput) as caught:
        config.load(path)
    assert caught.value.count == 1
    assert (f"{path}:4:10: the schedule id '-' is reserved: the ledger records the events of"
            " `eventcron send` under it. Choose another id.") in caught.value.render()


@pytest.mark.slow
def test_a_running_daemon_never_sends_or_retires_a_send(tmp_path: Path) -> None:
    # Before any daemon: a send the endpoint refused, and one killed waiting for its answer.
    write_token(tmp_path)
    with SinkThread(secret=SECRET, faults=Faults(fail_keys={"u_bad": 400})) as refusing:
        url = config.load(write_schedule(tmp_path, refusing.url, DAILY)).database
        Ledger.open(url).close()
        bad = eventcron(tmp_path, "send", "--user", "u_bad", "--event-type", "a:b")
    assert bad.returncode == 1, bad.stderr
    send_and_kill(tmp_path, url)
    before = {r.app_user_id: r for r in rows_of(url)}
    assert {u: (r.status, r.attempts) for u, r in before.items()} == {
        "u_bad": ("failed", 1), "u_slow": ("failed", 0)}
    assert before["u_slow"].last_error == UNANSWERED

    async def scenario() -> None:
        body = f"""
        schedules:
          - {{id: real, event_type: "a:b", at: "{soon(3)}", users: [u1, u2]}}
        """
        # Its start retires schedules the plan lacks and completes interrupted fires; its
        # dispatcher claims every due row: the real schedule's are sent, the sends' never.
        async with running(tmp_path, body) as run:
            assert run.db_url == url
            await run.until(lambda: sum(r.status == "delivered"
                                        for r in run.rows(Filters(schedule=("real",)))) == 2,
                            within=60)
            good = await asyncio.to_thread(eventcron, tmp_path, "send", "--user", "u_ok",
                                           "--event-type", "a:b")
            assert good.returncode == 0, good.stderr
            assert await run.daemon.reload("test")  # the plan applied again, `-` not in it
            await run.until(lambda: run.daemon.dispatcher.inflight == 0)
            users = sorted(r.app_user_id or "" for r in run.sink.records)
        assert users == ["u1", "u2", "u_ok"]  # the daemon's two, and the send it ran beside

    asyncio.run(scenario())
    after = {r.app_user_id: r for r in rows_of(url)}
    assert {u: (r.status, r.attempts) for u, r in after.items()} == {
        "u_bad": ("failed", 1), "u_slow": ("failed", 0), "u_ok": ("delivered", 1)}
    for user in ("u_bad", "u_slow"):
        assert after[user] == before[user]  # untouched: neither sent, retried nor cancelled
    history = as_json(eventcron(tmp_path, "history", "--schedule", "-", "--json"))
    assert [(e["outcome"], e["reason"], e["rows"]) for e in history] == [
        ("fired", None, 1)] * 3


def send_and_kill(folder: Path, url: str) -> None:
    """Start a send to a sink that holds its answer; kill the command once it is recorded."""
    with SinkThread(secret=SECRET, faults=Faults(latency=30)) as slow:
        write_schedule(folder, slow.url, DAILY, timeout="30s")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
        proc = subprocess.Popen([eventcron_command(), "send", "--user", "u_slow",
                                 "--event-type", "a:b"], cwd=folder, env=clean,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def recorded() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"eventcron send ended early: {proc.communicate()[1]}")
            return "u_slow" in sent_to(url)

        try:
            wait_for(recorded, 30, "the send to be recorded")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
