"""status, deliveries, replay, token, send and run's start-up checks, as processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eventcron.ledger import Ledger, NewRow, Result
from eventcron.testing import make_token
from tests.acceptance.conftest import Run
from tests.acceptance.processes import SECRET, start, start_sink, wait_for

T0 = 1_790_000_000_000  # ms

CONFIG = """\
version: 1
endpoint: {{url: "{url}", token: {{file: token}}}}
schedules:
  - {{id: alpha, event_type: "a:b", cron: "0 9 * * *", users: [u1, u2, u3]}}
  - {{id: beta, event_type: "b:c", every: 1h, users: [u4], enabled: false}}
"""


def setup_folder(folder: Path, *, url: str = "http://127.0.0.1:9/api/v1/webhook/event",
                 token_expires_in: float = 86400) -> None:
    (folder / "schedules.yaml").write_text(CONFIG.format(url=url))
    token = folder / "token"
    token.write_text(make_token(SECRET, expires_in=token_expires_in, now=time.time(),
                                claims={"sub": "app-123"}))
    token.chmod(0o600)


def seed_ledger(folder: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{folder / 'eventcron.db'}")
    try:
        ledger.enqueue([NewRow("alpha", f"u{i}", "a:b", T0, "{}", T0, T0 + 3_600_000)
                        for i in (1, 2, 3)], T0)
        a, b, c = ledger.claim("me", T0, 10, 60_000)
        ledger.record([Result(a.id, "delivered", 1, T0, 200, None, delivered_at=T0 + 10),
                       Result(b.id, "failed", 1, T0, 400, "HTTP 400 Bad Request"),
                       Result(c.id, "expired", 4, T0, 503, "HTTP 503; expired")], "me", T0)
        ledger.begin_fire("alpha", "UTC", T0, T0)
        ledger.finish_fire("alpha", "UTC", T0, 3, T0)
    finally:
        ledger.close()


@pytest.mark.slow
def test_status_json_and_text(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    seed_ledger(tmp_path)
    result = run("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["counts"] == {"pending": 0, "delivered": 1, "failed": 1, "expired": 1,
                                "cancelled": 0, "suppressed": 0}
    alpha, beta = status["schedules"]
    assert alpha["last_fire"] == "2026-09-21T14:13:20Z"
    assert alpha["next_fire"].endswith("T09:00:00Z")
    assert alpha["counts"]["failed"] == 1
    assert beta["enabled"] is False and beta["next_fire"] is None
    assert status["endpoint"]["last_error"] in ("HTTP 503; expired", "HTTP 400 Bad Request")
    assert status["endpoint"]["token"]["expired"] is False
    text = run("status").stdout
    assert "beta (disabled):" in text
    assert "Ledger: 0 pending, 1 delivered, 1 failed, 1 expired, 0 cancelled" in text


@pytest.mark.slow
def test_deliveries_filters_and_json_fields(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    seed_ledger(tmp_path)
    result = run("deliveries", "--status", "failed", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    for key in ("event_id", "schedule", "app_user_id", "event_type", "scheduled_for", "status",
                "attempts", "last_status_code", "last_error", "delivered_at"):
        assert key in row
    assert (row["app_user_id"], row["status"], row["last_status_code"]) == ("u2", "failed", 400)
    everything = json.loads(run("deliveries", "--json", "--user", "u1", "--user", "u3").stdout)
    assert sorted(r["app_user_id"] for r in everything) == ["u1", "u3"]
    assert json.loads(run("deliveries", "--json", "--since", "1h").stdout) == []
    text = run("deliveries", "--limit", "2")
    assert text.stdout.count("alpha / u") == 2
    assert "--limit 0 shows all" in text.stderr


@pytest.mark.slow
def test_replay_dry_run_then_for_real(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    seed_ledger(tmp_path)
    dry = run("replay", "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.startswith("2 failed or expired events would be replayed")
    assert json.loads(run("deliveries", "--status", "pending", "--json").stdout) == []
    only = run("replay", "--status", "expired")
    assert only.stdout.startswith("1 expired event is pending again")
    pending = json.loads(run("deliveries", "--status", "pending", "--json").stdout)
    assert [(r["app_user_id"], r["attempts"]) for r in pending] == [("u3", 0)]


def test_replay_refuses_other_states(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    result = run("replay", "--status", "delivered")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.slow
def test_token_shows_claims_never_the_token(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    token = (tmp_path / "token").read_text()
    result = run("token")
    assert result.returncode == 0, result.stderr
    assert "sub: app-123" in result.stdout
    assert "expires at" in result.stdout
    assert token not in result.stdout + result.stderr
    info = json.loads(run("token", "--json").stdout)
    assert info["claims"]["sub"] == "app-123" and info["expired"] is False


@pytest.mark.slow
def test_token_exits_1_when_expired_or_missing(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path, token_expires_in=-60)
    result = run("token")
    assert result.returncode == 1
    assert "expired at" in result.stdout
    (tmp_path / "token").unlink()
    missing = run("token")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "no token: the file"),
    ("expired", "the token expired at"),
    ("empty", "is empty"),
])
def test_run_refuses_to_start_without_a_usable_token(run: Run, tmp_path: Path, setup: str,
                                                     message: str) -> None:
    setup_folder(tmp_path, token_expires_in=-3600 if setup == "expired" else 86400)
    if setup == "missing":
        (tmp_path / "token").unlink()
    if setup == "empty":
        (tmp_path / "token").write_text("\n")
    result = run("run", timeout=30)
    assert result.returncode == 78
    assert message in result.stderr
    assert "Not starting" in result.stderr or "not starting" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_an_invalid_file_with_78(run: Run, tmp_path: Path) -> None:
    (tmp_path / "schedules.yaml").write_text("version: 1\nschedules: {}\n")
    result = run("run", timeout=30)
    assert result.returncode == 78
    assert "schedules must be a list" in result.stderr


def test_run_warns_well_ahead_of_expiry_and_of_a_readable_token(tmp_path: Path) -> None:
    setup_folder(tmp_path, token_expires_in=3 * 86400)
    (tmp_path / "token").chmod(0o644)
    daemon = start(["run"], tmp_path, "run")
    try:
        wait_for(lambda: "eventcron ready" in daemon.stderr(), 30, "the daemon to be ready")
    finally:
        code = daemon.stop()
    assert code == 0
    assert "expires at" in daemon.stderr() and "(in 2 days)" in daemon.stderr()
    assert "can be read by other users" in daemon.stderr()


@pytest.mark.slow
def test_send_posts_one_event(run: Run, tmp_path: Path) -> None:
    sink = start_sink(tmp_path)
    try:
        setup_folder(tmp_path, url=sink.url)
        Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}").close()  # as `run` creates it
        result = run("send", "--user", "u_42", "--event-type", "user:location:change",
                     "--data", '{"city": "Berlin"}')
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("delivered: HTTP 200")
        (got,) = sink.records()
        assert (got["app_user_id"], got["event_type"], got["data"]) == (
            "u_42", "user:location:change", {"city": "Berlin"})
        bad = run("send", "--user", "u", "--event-type", "t", "--data", "[1]")
        assert bad.returncode == 2
        assert "--data must be a JSON object" in bad.stderr
    finally:
        sink.proc.stop()


@pytest.mark.slow
def test_send_reports_a_refusal(run: Run, tmp_path: Path) -> None:
    sink = start_sink(tmp_path)
    try:
        setup_folder(tmp_path, url=sink.url)
        Ledger.open(f"sqlite:///{tmp_path / 'eventcron.db'}").close()
        (tmp_path / "token").write_text(make_token("x" * 40, expires_in=600, now=time.time()))
        result = run("send", "--user", "u_42", "--event-type", "a:b")
        assert result.returncode == 1
        assert "not delivered: HTTP 401" in result.stderr
    finally:
        sink.proc.stop()


def test_run_exits_1_not_78_when_the_database_is_unreachable(run: Run, tmp_path: Path) -> None:
    # No server is needed (nothing listens on port 9), but the driver is: without it the
    # URL could not even be tried. It comes with the [postgres] extra, which ./dev installs.
    pytest.importorskip("psycopg", reason="needs psycopg: pip install 'eventcron[postgres]'")
    setup_folder(tmp_path)
    result = run("--database", "postgresql+psycopg://postgres@127.0.0.1:9/eventcron", "run",
                 timeout=60)
    # A database that may come back is not a configuration error: systemd should retry.
    assert result.returncode == 1
    assert "cannot open the ledger" in result.stderr
    assert "Traceback" not in result.stderr
