"""``eventcron sink``'s secret from --secret, --secret-file or $EVENTCRON_SINK_SECRET."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventcron.testing import make_token
from tests.acceptance.conftest import Run
from tests.acceptance.processes import SECRET, Proc, reap, start, wait_for

BODY = json.dumps({"app_user_id": "u_1", "event_type": "reminder:checkin", "data": {}})
OTHER = "another-secret-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap()


def listening(proc: Proc) -> str:
    """Wait for the sink's "listening on URL" line and return the URL."""
    wait_for(lambda: "listening on" in proc.stdout() or proc.popen.poll() is not None, 30,
             "the sink to listen")
    found = re.search(r"listening on (\S+)", proc.stdout())
    assert found, proc.stderr()
    return found.group(1)


def status_with(url: str, secret: str) -> int:
    token = make_token(secret, now=time.time())
    response = httpx.post(url, content=BODY, timeout=10,
                          headers={"Content-Type": "application/json",
                                   "Authorization": f"Bearer {token}"})
    return response.status_code


@pytest.mark.parametrize("how", ["file", "env"])
def test_secret_from_file_or_environment_checks_signatures(tmp_path: Path, how: str) -> None:
    args = ["sink", "--port", "0"]
    env: dict[str, str] = {}
    if how == "file":
        secret_file = tmp_path / "secret"
        secret_file.write_text(SECRET + "\n")  # as an editor saves it
        args += ["--secret-file", str(secret_file)]
    else:
        env["EVENTCRON_SINK_SECRET"] = SECRET
    proc = start(args, tmp_path, "sink", env)
    url = listening(proc)
    assert status_with(url, SECRET) == 200
    assert status_with(url, OTHER) == 401
    assert proc.stop() == 0


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--secret", SECRET, "--secret-file", "s"], {}, "not allowed with argument"),
    (["--secret", SECRET], {"EVENTCRON_SINK_SECRET": SECRET},
     "the secret is given 2 ways (--secret or --secret-file, $EVENTCRON_SINK_SECRET);"
     " give exactly one."),
    (["--secret-file", "nosuch"], {}, "cannot read the secret file nosuch: No such file"),
])
def test_one_source_only(run: Run, tmp_path: Path, args: list[str], env: dict[str, str],
                         message: str) -> None:
    (tmp_path / "s").write_text(SECRET)
    done = run("sink", "--port", "0", *args, env=env, timeout=30)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_help_names_the_three_sources(run: Run) -> None:
    text = " ".join(run("sink", "--help").stdout.split())
    assert "--secret-file FILE" in text
    assert "$EVENTCRON_SINK_SECRET" in text
    assert "shows in ps" in text
