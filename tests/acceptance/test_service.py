"""The daemon as a service: the token never leaks, JSON logs, the systemd unit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from eventcron.testing import make_token
from tests.acceptance.conftest import ROOT, Run, eventcron_command
from tests.acceptance.processes import start, start_sink, wait_for, write_config

UNIT = ROOT / "systemd" / "eventcron.service"
MAX_EXPOSURE = 2.0  # systemd-analyze security score the unit must not exceed


@pytest.mark.slow
def test_the_token_never_appears_in_any_output(run: Run, tmp_path: Path) -> None:
    sink = start_sink(tmp_path, "--fail-rate", "0.3", "--throttle-rate", "0.1")
    path = write_config(tmp_path, sink.url, """\
  - {id: leak, event_type: "a:b", every: 1s, users: [u1, u2, u3]}
""")
    token_file = tmp_path / "token"
    good = token_file.read_text()
    rejected = make_token("r" * 40, expires_in=3600, now=time.time())  # wrong signature
    secrets_ = [good, good.rsplit(".", 1)[1], rejected, rejected.rsplit(".", 1)[1]]
    daemon = start(["run", "--verbose", "--log-format", "json"], tmp_path, "run")
    outputs: list[str] = []
    try:
        wait_for(lambda: len(sink.delivered()) >= 3, 30, "deliveries")
        daemon.popen.send_signal(signal.SIGHUP)
        token_file.write_text(rejected)
        daemon.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "rejected the token" in daemon.stderr(), 30, "a 401 pause")
        path.write_text(path.read_text() + "  - {id: broken\n")  # invalid: logged, ignored
        wait_for(lambda: "is not valid, still running" in daemon.stderr(), 30, "a bad reload")
        outputs.append(run("validate").stderr)
        outputs.append(run("token").stdout)
        path.write_text(path.read_text().replace("  - {id: broken\n", ""))
        # A send with the rejected token: its 401 is printed and recorded in the ledger.
        sent = run("send", "--user", "u9", "--event-type", "a:b")
        assert sent.returncode == 1 and "HTTP 401" in sent.stderr, sent.stderr
        outputs += [sent.stdout, sent.stderr]
        token_file.write_text(good)
        daemon.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "resuming deliveries" in daemon.stderr(), 30, "the resume")
        count = len(sink.delivered())
        wait_for(lambda: len(sink.delivered()) > count + 3, 30, "more deliveries")
    finally:
        code = daemon.stop()
        sink.proc.stop()
    assert code == 0
    for command in (["token"], ["token", "--json"], ["status", "--json"], ["status"],
                    ["deliveries", "--json", "--limit", "0"], ["validate"],
                    ["history", "--json", "--limit", "0"], ["deliveries", "--schedule", "-"]):
        result = run(*command)
        outputs += [result.stdout, result.stderr]
    outputs += [daemon.stdout(), daemon.stderr(), sink.proc.stdout(), sink.proc.stderr(),
                sink.record.read_text()]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("eventcron.db*"))
    everything = "\n".join(outputs)
    assert "rejected the token" in everything  # the 401 was reported ...
    assert "- / u9 / a:b" in everything  # ... and the send's row is in what was searched
    for secret in secrets_:
        assert secret not in everything  # ... without the token, anywhere
        assert secret.encode() not in stored
    # Every log line is one JSON object with the documented keys.
    lines = [line for line in daemon.stderr().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(item) for item in parsed)
    assert any(item["level"] == "debug" for item in parsed)  # --verbose


@pytest.mark.slow
def test_sd_notify_from_the_real_command(tmp_path: Path) -> None:
    import socket
    address = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(20)
    sink = start_sink(tmp_path)
    write_config(tmp_path, sink.url, """\
  - {id: n, event_type: "a:b", every: 1s, users: [u1]}
""")
    daemon = start(["run"], tmp_path, "run", env={"NOTIFY_SOCKET": str(address),
                                                  "WATCHDOG_USEC": "2000000"})
    messages: list[str] = []
    try:
        while not any("READY=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
        while not any(m == "WATCHDOG=1" for m in messages):
            messages.append(listener.recv(4096).decode())
        daemon.popen.send_signal(signal.SIGHUP)
        while not any("RELOADING=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
        reloading_at = next(i for i, m in enumerate(messages) if "RELOADING=1" in m)
        # The reload's READY=1 comes before a stop is asked for: a SIGTERM sent earlier
        # could end the daemon before the reload has finished.
        while not any(m.startswith("READY=1") for m in messages[reloading_at + 1:]):
            messages.append(listener.recv(4096).decode())
        daemon.popen.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
    finally:
        code = daemon.stop()
        sink.proc.stop()
        listener.close()
    assert code == 0
    reloading = next(m for m in messages if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in reloading
    after = messages[messages.index(reloading) + 1:]
    assert any(m.startswith("READY=1") for m in after)


systemd_analyze = shutil.which("systemd-analyze")


@pytest.mark.skipif(systemd_analyze is None, reason="needs systemd-analyze (Debian: systemd)")
def test_the_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    assert systemd_analyze is not None
    unit = tmp_path / "eventcron.service"
    # Point ExecStart at the installed command so verify can check it exists.
    unit.write_text(UNIT.read_text().replace("/opt/eventcron/bin/eventcron",
                                             eventcron_command()))
    # verify looks up Documentation=man:eventcron(1) with man. This (editable) install has no
    # page, so a stand-in answers; tests/integration/test_packaging.py checks the real one.
    pages = tmp_path / "man"
    (pages / "man1").mkdir(parents=True)
    (pages / "man1" / "eventcron.1").write_text(".TH EVENTCRON 1\n.SH NAME\neventcron \\- x\n")
    verify = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "MANPATH": f"{pages}:"})
    assert verify.returncode == 0, verify.stderr
    assert "eventcron.service" not in verify.stderr  # no warnings about the unit itself
    security = subprocess.run([systemd_analyze, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60, check=False)
    line = next(x for x in security.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":", 1)[1].split()[0])
    print(f"\n{line.strip()}")
    assert score <= MAX_EXPOSURE
    text = UNIT.read_text()
    for setting in ("Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure",
                    "RestartPreventExitStatus=78", "LoadCredential=", "StateDirectory=",
                    "DynamicUser=yes"):
        assert f"\n{setting}" in text
