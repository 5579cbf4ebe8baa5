"""Hand eventcron's argument parser to argparse-manpage while the wheel is built.

Why this file exists: the wheel build runs in an isolated environment that has only the
build requirements, where eventcron is not installed and src/ is not on sys.path, so
[tool.build_manpages] in pyproject.toml cannot name eventcron.cli.main as a module. It
names this file instead (pyfile=), which puts src/ on sys.path and builds the parser with
build_parser(). That works because eventcron.cli.main imports only the standard library
and eventcron itself: a third-party import there would break the build, which
tests/integration/test_packaging.py would show.
"""

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from eventcron.cli.main import build_parser, commands

# A usage line argparse leaves whole: roff wraps it to the reader's width, while argparse's
# own wrapping (at the build machine's terminal width) would read as broken lines.
_UNWRAPPED = 10_000


def manpage_parser() -> argparse.ArgumentParser:
    """Return build_parser()'s parser, adjusted for the page eventcron(1).

    argparse-manpage 4.8 prints a command's description but drops its epilog, where each
    command's examples and exit statuses are; they are appended to the description here,
    for the page only. Its lines keep their breaks: roff breaks before a line that starts
    with a space, and every line of the epilog after its headings does.
    """
    parser = build_parser()
    for command in commands(parser).values():
        formatter = command.formatter_class
        if isinstance(formatter, type) and issubclass(formatter, argparse.HelpFormatter):
            command.formatter_class = functools.partial(formatter, width=_UNWRAPPED)
        if command.epilog:
            # Hazard: argparse-manpage escapes only backslashes and hyphens, so an epilog
            # line starting with "." or "'" would be read as a roff request.
            command.description = f"{command.description or ''}\n\n{command.epilog}".lstrip()
    return parser
