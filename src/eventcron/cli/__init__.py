"""The command line; see :mod:`eventcron.cli.main`."""

from eventcron.cli.main import build_parser, main, run_main

__all__ = ["build_parser", "main", "run_main"]
