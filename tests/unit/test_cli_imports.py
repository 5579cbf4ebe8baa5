"""Commands import only what they need: `--version` and `validate` never load the heavy stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "aiohttp", "apscheduler", "prometheus_client", "httpx", "jwt", "asyncio")
PROBE = """
import sys
from eventcron.cli import main
code = main(sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print("heavy:", ",".join(heavy), "code:", code, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--version"], ["validate", "schedules.example.yaml"],
                                  ["next", "--cron", "0 9 * * 1-5", "--count", "1"]])
def test_light_commands_never_import_the_database_http_or_scheduler(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert last == "heavy:  code: 0", result.stderr


def test_version_does_not_even_read_yaml() -> None:
    # `--version` needs the parser only: not PyYAML, not the schedule file's reader.
    lean = (*HEAVY, "yaml", "eventcron.config.reader", "eventcron.timing")
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=lean), "--version"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.stderr.strip().splitlines()[-1] == "heavy:  code: 0", result.stderr


def test_the_ledger_commands_do_import_it_when_they_run(tmp_path: Path) -> None:
    # The probe can fail: a command that needs the database layer loads it.
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), "--database",
         str(tmp_path / "none.db"), "deliveries"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "heavy: sqlalchemy" in result.stderr.splitlines()[-1]
