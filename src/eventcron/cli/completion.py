"""`eventcron completion SHELL`: the shell's completion script, from argcomplete.

The script holds no list of commands or options: on each Tab the shell runs eventcron
with argcomplete's variables set, and main() answers from the parser itself, so what the
shell offers is what the command accepts (global options after a command excepted: they
are hidden there, as in that command's --help).
"""

from __future__ import annotations

import argparse

from eventcron.cli.output import EXIT_OK, out


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script of ``args.shell`` for the `eventcron` command."""
    from argcomplete.shell_integration import shellcode

    out(shellcode(["eventcron"], shell=args.shell).rstrip("\n"))
    return EXIT_OK


def schedule_ids(prefix: str, parsed_args: argparse.Namespace, **_: object) -> list[str]:
    """Return the schedule ids of the file the command would read (Tab after ``fire``).

    Read as plain YAML, without validation or audiences, so a file being edited still
    completes; a file that cannot be read completes nothing (a Tab never prints an error).
    """
    import yaml

    from eventcron.config import locate

    try:
        path = locate.resolve_config_path(getattr(parsed_args, "config", None))
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return []
    listed = document.get("schedules") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        return []
    ids = (str(s["id"]) for s in listed if isinstance(s, dict) and s.get("id") is not None)
    return [i for i in ids if i.startswith(prefix)]
