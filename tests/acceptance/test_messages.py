"""Messages a person reads (issue 14), from the installed command in real processes.

Connection errors come from a real closed loopback port and a name under the reserved
``.invalid`` top-level domain; the second instance and the reload are real daemons.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest

from eventcron.ledger import Ledger, NewRow
from eventcron.testing import make_token
from tests.acceptance.conftest import Run
from tests.acceptance.processes import SECRET, is_ready, start, wait_for
from tests.net import needs_resolver

T0 = 1_790_000_000_000  # ms
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ ")

CONFIG = """\
version: 1
endpoint: {{url: "{url}", token: {{file: token}}}}
schedules:
  - {{id: alpha, event_type: "a:b", cron: "0 9 * * *", users: [u1]}}
  - {{id: beta, event_type: "b:c", every: 1h, users: [u2]}}
"""


def setup_folder(folder: Path, *, url: str = "http://127.0.0.1:9/api/v1/webhook/event",
                 token: str | None = None) -> None:
    (folder / "schedules.yaml").write_text(CONFIG.format(url=url))
    path = folder / "token"
    path.write_text(token or make_token(SECRET, expires_in=30 * 86400, now=time.time()))
    path.chmod(0o600)


def closed_port() -> int:
    """Return a loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.slow
def test_token_prints_the_expiry_time_and_jwt_in_their_own_case(run: Run,
                                                                tmp_path: Path) -> None:
    setup_folder(tmp_path)
    result = run("token")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^The token expires at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ days\)\.$",
                     result.stdout, re.MULTILINE), result.stdout
    (tmp_path / "token").write_text("an-opaque-api-key")
    opaque = run("token")
    assert "The token is not a JWT, so its expiry is unknown." in opaque.stdout, opaque.stdout


@pytest.mark.slow
@needs_resolver
def test_send_says_the_connection_was_refused_or_the_host_does_not_exist(
        run: Run, tmp_path: Path) -> None:
    port = closed_port()
    setup_folder(tmp_path, url=f"http://127.0.0.1:{port}/api/v1/webhook/event")
    Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}").close()  # as `run` creates it
    refused = run("send", "--user", "u1", "--event-type", "a:b")
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"eventcron: not delivered: connection refused by 127.0.0.1:{port} (event "), (
        refused.stderr)
    # https: the file refuses plain http to any host but loopback; the name fails first.
    setup_folder(tmp_path, url="https://eventcron-test.invalid/api/v1/webhook/event")
    unknown = run("send", "--user", "u1", "--event-type", "a:b")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(
        "eventcron: not delivered: no such host eventcron-test.invalid (event "), unknown.stderr
    assert "ssl:default" not in refused.stderr + unknown.stderr


@pytest.mark.slow
def test_replay_of_a_schedule_not_in_the_ledger_says_so_and_exits_1(run: Run,
                                                                    tmp_path: Path) -> None:
    setup_folder(tmp_path)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}")
    try:
        ledger.enqueue([NewRow("alpha", "u1", "a:b", T0, "{}", T0, T0 + 3_600_000)], T0)
    finally:
        ledger.close()
    result = run("replay", "--schedule", "alpah")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no schedule 'alpah' in the ledger sqlite:///" in result.stderr
    assert result.stderr.endswith("eventcron.db (did you mean 'alpha'?); it knows: alpha.\n")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["deliveries", "history", "replay"])
def test_since_yesterday_says_which_forms_are_accepted(run: Run, tmp_path: Path,
                                                       command: str) -> None:
    setup_folder(tmp_path)
    result = run(command, "--since", "yesterday")
    assert result.returncode == 2
    assert result.stderr.endswith(
        "eventcron: error: argument --since: 'yesterday' is not a time --since accepts; give"
        " a duration ago such as 2h or 3d, or an RFC 3339 time such as"
        " 2026-12-01T09:00:00Z.\n"), result.stderr


@pytest.mark.slow
def test_a_second_run_on_the_ledger_says_another_instance_is_active(tmp_path: Path) -> None:
    setup_folder(tmp_path)
    first = start(["run"], tmp_path, "first")
    wait_for(lambda: is_ready(first), 60, "the first instance to be ready")
    second = start(["run"], tmp_path, "second")
    try:
        wait_for(lambda: is_ready(second), 60, "the second instance to be ready")
    finally:
        codes = [second.stop(), first.stop()]
    assert codes == [0, 0]
    said = [line for line in second.stderr().splitlines() if "already running" in line]
    assert len(said) == 1, second.stderr()
    assert said[0].endswith(
        f" INFO another instance is already running on this ledger ({socket.gethostname()}"
        f" pid {first.popen.pid}); that is safe: each event is claimed by one instance at a"
        " time, and each occurrence enqueued once")
    assert "already running" not in first.stderr()


@pytest.mark.slow
def test_every_line_of_a_refused_reload_has_a_timestamp(tmp_path: Path) -> None:
    setup_folder(tmp_path)
    daemon = start(["run"], tmp_path, "run")
    try:
        wait_for(lambda: is_ready(daemon), 60, "the daemon to be ready")
        path = tmp_path / "schedules.yaml"
        path.write_text(path.read_text().replace('"0 9 * * *"', '"61 9 * * *"')
                        .replace("every: 1h,", "every: 1h, timezone: Mars/Base,"))
        daemon.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "Mars/Base" in daemon.stderr() and "61 9" in daemon.stderr(), 30,
                 "the reload to be refused")
    finally:
        code = daemon.stop()
    assert code == 0
    lines = daemon.stderr().splitlines()
    problems = [line for line in lines if "Mars/Base" in line or "'61 9 * * *'" in line]
    assert len(problems) == 2, lines
    assert all(" ERROR " in line for line in problems), problems
    assert [line for line in lines if not STAMP.match(line)] == []
