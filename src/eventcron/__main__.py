"""Allow ``python -m eventcron``."""

from eventcron.cli import run_main

run_main()
