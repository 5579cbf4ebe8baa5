"""Where eventcron looks by default: the names every entry point and the file reader share.

Kept apart from the reader so that the command line can show them in its help without
loading it.
"""

from __future__ import annotations

from typing import Final

DEFAULT_CONFIG: Final = "schedules.yaml"
CONFIG_ENV: Final = "EVENTCRON_CONFIG"
DATABASE_ENV: Final = "EVENTCRON_DATABASE_URL"
STATE_DIRECTORY_ENV: Final = "STATE_DIRECTORY"  # set by systemd for StateDirectory=
