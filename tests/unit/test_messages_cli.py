"""Messages a person reads, each as it is printed or logged (issue 14).

Commands run in-process through ``main()`` on real SQLite files; connection errors come
from real sockets on loopback (a closed port) and a name under the reserved ``.invalid``
top-level domain, which never resolves (RFC 2606).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventcron.cli import main
from eventcron.config import TokenSource
from eventcron.delivery.auth import Token
from eventcron.delivery.sender import Sender
from eventcron.firing import plan
from eventcron.firing.firer import Firer
from eventcron.ledger import Instance, Ledger, NewRow, Owner, Result
from eventcron.logs import TextFormatter
from eventcron.service.daemon import _note_others
from eventcron.testing import make_token
from eventcron.text import count, sentence
from tests.net import needs_resolver
from tests.unit.fakes import FakeClock, ledger_thread, write_config
from tests.unit.test_firing import minute

T0 = 1_790_000_000_000  # ms: 2026-09-21T14:13:20Z
HOUR = 3_600_000
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (ERROR|INFO) ")


# --- the two rules: a sentence's first letter, and counts -----------------------------------


def test_a_sentence_keeps_the_case_of_everything_after_its_first_letter() -> None:
    assert sentence("the token expires at 2026-12-31T17:04:37Z (in 3 days)") == (
        "The token expires at 2026-12-31T17:04:37Z (in 3 days)")
    assert sentence("the token is not a JWT") == "The token is not a JWT"
    assert sentence("") == ""


def test_a_count_is_singular_for_one_and_always_has_thousands_separators() -> None:
    assert [count(n, "user") for n in (0, 1, 2, 1000, 1_234_567)] == [
        "0 users", "1 user", "2 users", "1,000 users", "1,234,567 users"]
    assert (count(1, "retry", "retries"), count(3, "retry", "retries")) == ("1 retry",
                                                                            "3 retries")


# --- eventcron token ------------------------------------------------------------------------


def token_folder(folder: Path, token: str) -> Path:
    write_config(folder, "- {id: alpha, event_type: 'a:b', every: 1h, users: [u1]}")
    (folder / "token").write_text(token)
    (folder / "token").chmod(0o600)
    return folder / "schedules.yaml"


def test_token_keeps_the_case_of_the_expiry_time_and_of_jwt(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = token_folder(tmp_path, make_token("s" * 32, expires_in=30 * 86400, now=time.time()))
    assert main(["--config", str(path), "token"]) == 0
    said = capsys.readouterr().out
    assert re.search(r"^The token expires at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ days\)\.$",
                     said, re.MULTILINE), said
    (tmp_path / "token").write_text("an-opaque-api-key")
    assert main(["--config", str(path), "token"]) == 0
    assert "The token is not a JWT, so its expiry is unknown." in capsys.readouterr().out


# --- counts in what the commands print and the daemon logs ----------------------------------


def test_a_fire_of_one_user_says_one_user_and_a_large_one_has_separators(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    many = ", ".join(f"m{i}" for i in range(1500))
    cfg = write_config(tmp_path, f"""\
        - {{id: one, event_type: 'e:s', every: 1m, users: [u1]}}
        - {{id: many, event_type: 'e:s', every: 1m, users: [{many}]}}""")
    one, lots = plan.jobs(cfg)

    async def scenario() -> None:
        async with ledger_thread(memory_ledger) as db:
            firer = Firer(db, FakeClock(), cfg.delivery, lambda: None)
            await firer.fire(one, minute(1))
            await firer.fire(lots, minute(1))

    asyncio.run(scenario())
    fired = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("fired"))
    assert fired == ["fired many@UTC at 2026-12-01T10:01:00Z: 1,500 users enqueued",
                     "fired one@UTC at 2026-12-01T10:01:00Z: 1 user enqueued"]


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """A ledger of schedule ``alpha``: one user, 1,200 rows pending and one failed."""
    path = tmp_path / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{path}")
    try:
        ledger.enqueue([NewRow("alpha", "u1", "a:b", T0 + i * 60_000, "{}", T0, T0 + HOUR)
                        for i in range(1201)], T0)
        (claimed,) = ledger.claim("me", T0, 1, 60_000)
        ledger.record([Result(claimed.id, "failed", 1, T0, 400, "HTTP 400 Bad Request")],
                      "me", T0)
    finally:
        ledger.close()
    write_config(tmp_path, "- {id: alpha, event_type: 'a:b', every: 1h, users: [u1]}")
    return path


def test_status_counts_have_one_rule(ledger_file: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = str(tmp_path / "schedules.yaml")
    assert main(["--config", config, "--database", str(ledger_file), "status"]) == 0
    said = capsys.readouterr().out
    assert "alpha: every, UTC, 1 user; last fire never" in said, said
    assert "1,200 pending, 0 delivered, 1 failed, 0 expired" in said, said
    assert "Ledger: 1,200 pending, 0 delivered, 1 failed" in said, said


def test_replaying_one_event_says_it_in_the_singular(ledger_file: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database", str(ledger_file), "replay", "--dry-run"]) == 0
    assert capsys.readouterr().out == (
        "1 failed or expired event would be replayed (dry run; nothing changed).\n")
    assert main(["--database", str(ledger_file), "replay", "--schedule", "alpha"]) == 0
    assert capsys.readouterr().out.startswith(
        "1 failed or expired event is pending again; a running eventcron sends it now.")


# --- replay of a schedule the ledger does not know ------------------------------------------


def test_replay_of_a_schedule_the_ledger_does_not_know_says_so_and_exits_1(
        ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database", str(ledger_file), "replay", "--schedule", "alhpa"]) == 1
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == (f"eventcron: no schedule 'alhpa' in the ledger sqlite:///{ledger_file}"
                        " (did you mean 'alpha'?); it knows: alpha.\n")
    # One it knows with nothing to replay is not an error: zero, said as such.
    assert main(["--database", str(ledger_file), "replay", "--schedule", "alpha",
                 "--status", "expired", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("0 expired events would be replayed")


# --- --since --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deliveries", "history", "replay"])
@pytest.mark.parametrize(("since", "says"), [
    ("yesterday", "argument --since: 'yesterday' is not a time --since accepts; give a"
                  " duration ago such as 2h or 3d, or an RFC 3339 time such as"
                  " 2026-12-01T09:00:00Z."),
    ("2026-12-01", "argument --since: '2026-12-01' is a date without a time; give an RFC 3339"
                   " time such as 2026-12-01T00:00:00Z, or a duration ago such as 2h or 3d."),
])
def test_since_says_which_forms_it_accepts(ledger_file: Path, command: str, since: str,
                                           says: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database", str(ledger_file), command, "--since", since]) == 2
    assert capsys.readouterr().err.endswith(f"eventcron: error: {says}\n")


# --- a second instance on the ledger --------------------------------------------------------


def instance(owner: Owner, *, seen: int = T0, stopped: int | None = None) -> Instance:
    return Instance(owner.format(), owner.host, owner.pid, "0.1.0", T0 - HOUR, seen, stopped,
                    False, "0" * 64)


def test_a_start_beside_a_running_instance_names_it_and_says_it_is_safe(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventcron")
    me = Owner.here()
    other = Owner("elsewhere", 4242, "abcd1234", "4026531836", "0badf00d")
    third = Owner("thirdbox", 77, "abcd1234", "4026531836", "0badf00d")
    _note_others([instance(me), instance(other)], me.format(), T0 + 2_000)
    assert [r.getMessage() for r in caplog.records] == [
        "another instance is already running on this ledger (elsewhere pid 4242); that is"
        " safe: each event is claimed by one instance at a time, and each occurrence"
        " enqueued once"]
    caplog.clear()
    _note_others([instance(other), instance(third)], me.format(), T0)
    assert caplog.records[0].getMessage().startswith(
        "2 other instances are already running on this ledger (elsewhere pid 4242; thirdbox"
        " pid 77)")
    caplog.clear()
    # Alone: itself, one stopped, one silent for minutes (crashed) say nothing.
    _note_others([instance(me), instance(other, stopped=T0), instance(third, seen=T0 - HOUR)],
                 me.format(), T0)
    assert caplog.records == []


# --- text log lines of several lines --------------------------------------------------------


def test_every_line_of_a_text_log_message_starts_with_its_time_and_level() -> None:
    record = logging.LogRecord(
        "eventcron", logging.ERROR, __file__, 1,
        "reload (SIGHUP): %s is not valid, still running the previous version:\n%s", (
            "schedules.yaml", "schedules.yaml:3: bad cron\nschedules.yaml:9: no such zone"),
        None)
    lines = TextFormatter().format(record).splitlines()
    assert len(lines) == 3
    assert all(STAMP.match(line) for line in lines), lines
    assert {line[:23] for line in lines} == {lines[0][:23]}  # the same time on each
    assert lines[1].endswith(" ERROR schedules.yaml:3: bad cron")
    single = logging.LogRecord("eventcron", logging.INFO, __file__, 1, "one line", (), None)
    assert STAMP.match(TextFormatter().format(single))


# --- why a connection failed ----------------------------------------------------------------


def closed_port() -> int:
    """Return a loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def send_to(url: str) -> str | None:
    token = Token("opaque-api-key-0123456789", TokenSource("env", "T"), is_jwt=False)

    async def go() -> str | None:
        sender = Sender(url, token, timeout=5, concurrency=1)
        try:
            outcome = await sender.send("e1", "u1", "a:b", "{}", datetime.now(UTC))
        finally:
            await sender.aclose()
        assert outcome.kind == "retry"
        return outcome.error

    return asyncio.run(go())


def test_a_closed_port_is_a_refused_connection() -> None:
    port = closed_port()
    assert send_to(f"http://127.0.0.1:{port}/events") == f"connection refused by 127.0.0.1:{port}"


@needs_resolver
def test_a_name_that_does_not_resolve_is_no_such_host() -> None:
    assert send_to("http://eventcron-test.invalid/events") == (
        "no such host eventcron-test.invalid")



@pytest.mark.parametrize(("argv", "said"), [
    (["--data", '{"a": NaN}'], "--data holds NaN, which JSON does not allow"),
    (["--data", '{"a": [1, -Infinity]}'], "--data holds -Infinity, which JSON does not allow"),
    (["--data", '{"a": "\\ud800"}'], "--data holds a lone surrogate"),
    (["--data", "[1]"], "--data must be a JSON object"),
    (["--user", "u\udcff"], "--user holds a character that is not valid UTF-8 at character 2"),
])
def test_send_refuses_data_it_could_neither_send_nor_record(
        argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before the file, the token or the ledger are read: none exists here.
    base = {"--user": "u1", "--event-type": "a:b", "--data": "{}"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = [word for pair in base.items() for word in pair]
    assert main(["--config", str(tmp_path / "none.yaml"), "send", *args]) == 2
    err = capsys.readouterr().err
    assert f"eventcron: error: {said}" in err and "Traceback" not in err
