"""Operator commands with only a ledger, and `run` refusing a ledger it cannot use.

The commands that read or edit the ledger must work when they are needed most: with an
invalid schedule file in the folder, with no file at all, and with the ledger given as a
plain path. `run` must refuse a ledger it cannot open or write with exit 78 (systemd does
not restart it in a loop) and a sentence naming the path and the cause.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Run
from tests.acceptance.processes import start, wait_for
from tests.acceptance.test_operator_commands import seed_ledger, setup_folder

INVALID = "version: 1\nschedules:\n  - {id: alpha, cron: '61 9 * * *', users: [u1]}\n"
# Two problems: the minute is out of range, and event_type is missing.
UNREADABLE = "version: 1\nschedules: [\n"  # not even YAML


def assert_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.strip(), "expected a sentence on standard error"


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A seeded ledger in ``tmp_path/state`` (3 rows of schedule alpha; fired once)."""
    state = tmp_path / "state"
    state.mkdir()
    setup_folder(state)
    seed_ledger(state)
    (state / "schedules.yaml").unlink()
    return state / "eventcron.db"


def invalid_file(folder: Path, text: str = INVALID) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "schedules.yaml"
    path.write_text(text)
    return path


# --- deliveries and replay never need a valid file when given the ledger -----------------


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.slow
def test_deliveries_and_replay_ignore_an_invalid_file_beside_a_database(
        run: Run, tmp_path: Path, ledger: Path, how: str) -> None:
    work = tmp_path / "work"
    invalid_file(work)
    url = f"sqlite:///{ledger}"

    def go(*args: str) -> subprocess.CompletedProcess[str]:
        if how == "option":
            return run("--database", url, *args, cwd=work)
        return run(*args, cwd=work, env={"EVENTCRON_DATABASE_URL": url})

    listed = go("deliveries", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["app_user_id"] for r in json.loads(listed.stdout)) == ["u1", "u2", "u3"]
    dry = go("replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("2 failed or expired events would be replayed")
    done = go("replay", "--status", "failed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 failed event is pending again")
    # The invalid file's delivery policy is unknown: replay says which expiry it used.
    assert "schedules.yaml is not valid" in done.stderr and "default" in done.stderr
    assert_sentence(done.stderr)


@pytest.mark.slow
def test_an_invalid_file_that_names_the_ledger_is_one_sentence_suggesting_database(
        run: Run, tmp_path: Path) -> None:
    invalid_file(tmp_path)
    for command in ("deliveries", "replay"):
        result = run(command)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "schedules.yaml is not valid (2 problems" in lines[0]
        assert "eventcron validate" in lines[0] and "--database" in lines[0]
        assert_sentence(result.stderr)


def test_no_file_and_no_database_suggests_database(run: Run, tmp_path: Path) -> None:
    result = run("deliveries")
    assert result.returncode == 1
    assert "there is no schedule file at schedules.yaml" in result.stderr
    assert "--database" in result.stderr
    assert_sentence(result.stderr)


# --- --database takes a plain path -------------------------------------------------------


@pytest.mark.slow
def test_database_takes_a_plain_path_relative_to_the_current_folder(
        run: Run, tmp_path: Path, ledger: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ledger, work / "x.db")
    for path in (str(ledger), "./x.db", "x.db"):
        result = run("deliveries", "--json", "--database", path, cwd=work)
        assert result.returncode == 0, (path, result.stderr)
        assert len(json.loads(result.stdout)) == 3
    env = run("replay", "--dry-run", cwd=work, env={"EVENTCRON_DATABASE_URL": "x.db"})
    assert env.returncode == 0, env.stderr
    assert env.stdout.startswith("2 failed or expired")
    # Relative to the current folder, not to the (absent) schedule file's.
    nested = run("deliveries", "--database", "work/x.db", cwd=tmp_path)
    assert nested.returncode == 0, nested.stderr
    missing = run("deliveries", "--database", "nope.db", cwd=work)
    assert missing.returncode == 1
    assert f"there is no ledger at {work / 'nope.db'}" in missing.stderr
    assert_sentence(missing.stderr)


def test_run_creates_the_ledger_at_a_plain_relative_path(tmp_path: Path) -> None:
    setup_folder(tmp_path)
    (tmp_path / "state").mkdir()
    daemon = start(["--database", "state/new.db", "run"], tmp_path, "run")
    try:
        wait_for(lambda: "eventcron ready" in daemon.stderr(), 30, "the daemon to be ready")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr()
    assert (tmp_path / "state" / "new.db").is_file()
    assert not (tmp_path / "eventcron.db").exists()


def test_a_read_only_ledger_can_still_be_read(run: Run, tmp_path: Path, ledger: Path) -> None:
    url = f"sqlite:///file:{ledger}?mode=ro&uri=true"
    result = run("deliveries", "--json", "--database", url)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


# --- status with an invalid file ----------------------------------------------------------


@pytest.mark.slow
def test_status_shows_the_ledger_when_the_file_is_invalid(run: Run, tmp_path: Path) -> None:
    setup_folder(tmp_path)
    seed_ledger(tmp_path)
    invalid_file(tmp_path)  # no database: key, so the ledger is the default beside it
    text = run("status")
    assert text.returncode == 0, text.stderr
    (warning,) = text.stderr.strip().splitlines()
    assert "schedules.yaml is not valid" in warning and "2 problems" in warning
    assert "eventcron validate" in warning
    assert "Ledger: 0 pending, 1 delivered, 1 failed, 1 expired, 0 cancelled" in text.stdout
    assert "alpha: last fire 2026-09-21T14:13:20Z" in text.stdout
    as_json = run("status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["counts"]["failed"] == 1
    (alpha,) = status["schedules"]
    assert (alpha["id"], alpha["last_fire"]) == ("alpha", "2026-09-21T14:13:20Z")
    assert alpha["counts"]["delivered"] == 1
    assert status["file"] == {"path": "schedules.yaml", "valid": False, "problems": 2}


def test_status_reads_the_database_key_of_an_invalid_file(run: Run, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    seed_ledger(state)
    invalid_file(tmp_path, f"database: sqlite:///state/eventcron.db\n{INVALID}")
    result = run("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["expired"] == 1


@pytest.mark.slow
def test_status_with_a_database_and_an_unreadable_file(run: Run, tmp_path: Path,
                                                       ledger: Path) -> None:
    invalid_file(tmp_path, UNREADABLE)
    result = run("--database", f"sqlite:///{ledger}", "status")
    assert result.returncode == 0, result.stderr
    assert "schedules.yaml is not valid" in result.stderr
    assert "Ledger: 0 pending, 1 delivered" in result.stdout
    # Without --database the ledger cannot be found: say so and suggest it.
    lost = run("status")
    assert lost.returncode == 1
    assert "schedules.yaml is not valid" in lost.stderr and "--database" in lost.stderr
    assert_sentence(lost.stderr)


def test_status_with_only_a_database(run: Run, tmp_path: Path, ledger: Path) -> None:
    result = run("--database", f"sqlite:///{ledger}", "status")
    assert result.returncode == 0, result.stderr
    assert "alpha: last fire 2026-09-21T14:13:20Z" in result.stdout


# --- run refuses a ledger it cannot open or write ----------------------------------------


def _immutable(path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.parametrize(("case", "cause"), [
    ("missing folder", "does not exist"),
    ("under a file", "is not a folder"),
    ("a folder", "is a folder, not a file"),
    ("not a database", "file is not a database"),
    ("read-only", "readonly"),
    ("immutable", "readonly"),
])
def test_run_exits_78_when_the_ledger_cannot_be_opened_or_written(
        run: Run, tmp_path: Path, case: str, cause: str) -> None:
    setup_folder(tmp_path)
    target = tmp_path / "ledger" / "eventcron.db"
    if case == "under a file":  # the token file stands where the folder should be
        target = tmp_path / "token" / "eventcron.db"
    database = f"sqlite:///{target}"
    if case == "a folder":
        target.mkdir(parents=True)
    elif case == "not a database":
        target.parent.mkdir()
        target.write_bytes(b"these bytes are not an SQLite database\n" * 100)
    elif case in ("read-only", "immutable"):
        target.parent.mkdir()
        seed_ledger(target.parent)
        database = f"sqlite:///file:{target}?mode=ro&uri=true" if case == "read-only" else (
            database)
        if case == "immutable" and not _immutable(target):
            pytest.skip("chattr +i is not available here")
    try:
        result = run("--database", database, "run", timeout=60)
    finally:
        if case == "immutable":
            subprocess.run(["chattr", "-i", str(target)], check=False)
    assert result.returncode == 78, result.stderr
    assert str(target) in result.stderr and cause in result.stderr
    assert "not starting" in result.stderr.lower()
    assert_sentence(result.stderr)
