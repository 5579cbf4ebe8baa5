"""Acceptance tests drive the installed ``eventcron`` command in subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def eventcron_command() -> str:
    """Find the console script installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "eventcron"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("eventcron")
    if found is None:
        pytest.fail("the eventcron command is not installed; run ./dev test")
    return found


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run ``eventcron ARGS`` in ``tmp_path`` and return the completed process."""

    def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             input_text: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCRON_")}
        full_env.update(env or {})
        argv: Sequence[str] = [eventcron_command(), *args]
        return subprocess.run(argv, cwd=cwd or tmp_path, env=full_env, input=input_text,
                              capture_output=True, text=True, timeout=timeout, check=False)

    return _run
