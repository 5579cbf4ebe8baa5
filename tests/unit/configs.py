"""Writing schedule files and collecting what `config.load` refuses, for the config tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eventcron import config
from eventcron.problems import InvalidInput

# The smallest valid schedule file: one schedule, one user.
MINIMAL = """\
version: 1
schedules:
  - id: s
    event_type: a:b
    cron: "0 9 * * *"
    users: [u1]
"""


def write(tmp_path: Path, text: str, name: str = "schedules.yaml") -> Path:
    """Write ``text`` (dedented) to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    """Return every problem ``config.load`` reports for ``path``, as printed."""
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    return [str(p) for p in info.value.problems]
