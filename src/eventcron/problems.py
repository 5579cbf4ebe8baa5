"""Located problems: the ``path:line:col: message`` errors every input reader reports."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

MAX_PROBLEMS = 200  # count: past this a file is junk, and more lines would bury the first


@dataclass(frozen=True, slots=True)
class Problem:
    """One error in an input file, pointing at a line (1-based) and, when known, a column."""

    path: str
    line: int
    col: int | None
    message: str
    # For a problem that points at another file's own problems: (what, path) of that file,
    # e.g. ("audience file", "/srv/users.csv"), so a summary can name the file at fault.
    refers: tuple[str, str] | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.col is not None:
            where += f":{self.col}"
        return f"{where}: {self.message}"


class InvalidInput(Exception):
    """Raised with every problem found in an input file; ``str()`` is one problem per line."""

    def __init__(self, problems: Iterable[Problem], *, truncated: int = 0) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.col or 0))
        self.truncated = truncated
        super().__init__(self.render())

    @property
    def count(self) -> int:
        """How many problems the input has, those left unlisted included."""
        return len(self.problems) + self.truncated

    def render(self) -> str:
        """Return the problems as lines, with a closing count when some were left out."""
        lines = [str(p) for p in self.problems]
        if self.truncated:
            lines.append(f"... and {self.truncated} more problems not shown.")
        return "\n".join(lines)

    def culprits(self, main: str) -> list[str]:
        """Name the files at fault, for "... is not valid": ``main`` while it has problems.

        Only when every problem lies in other files (or points at them) are those named,
        as "the audience file /srv/users.csv"; problems left unlisted may be anywhere.
        """
        named = {p.refers[1]: p.refers[0] for p in self.problems if p.refers}
        at_fault: dict[str, None] = {}
        for p in self.problems:
            path = p.refers[1] if p.refers else p.path
            if path == main:
                return [main]
            at_fault[path] = None
        if self.truncated or not at_fault:
            return [main]
        return [f"the {named[path]} {path}" if path in named else path for path in at_fault]


class Problems:
    """Collects problems up to :data:`MAX_PROBLEMS`, then only counts them."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self._items: list[Problem] = []
        self._limit = limit
        self.dropped = 0

    def add(self, path: str, line: int, col: int | None, message: str, *,
            force: bool = False, refers: tuple[str, str] | None = None) -> None:
        """Record one problem (``line`` and ``col`` are 1-based); ``force`` ignores the limit.

        ``refers`` marks a problem that points at another file's problems (see
        :attr:`Problem.refers`).
        """
        if force or len(self._items) < self._limit:
            self._items.append(Problem(path, line, col, message, refers))
        else:
            self.dropped += 1

    def extend(self, problems: Iterable[Problem]) -> None:
        """Record problems found by another reader."""
        for p in problems:
            self.add(p.path, p.line, p.col, p.message, refers=p.refers)

    @property
    def items(self) -> list[Problem]:
        """Return the problems kept (see :attr:`dropped` for the rest)."""
        return list(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items) + self.dropped

    @property
    def full(self) -> bool:
        """True once the limit is reached, so callers can stop scanning early."""
        return len(self._items) >= self._limit

    def raise_if_any(self) -> None:
        """Raise :class:`InvalidInput` with everything collected, if anything was."""
        if self._items:
            raise InvalidInput(self._items, truncated=self.dropped)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def quote_list(items: Iterable[str], conjunction: str = "or") -> str:
    """Render names as ``'a', 'b' or 'c'`` for messages."""
    quoted = [repr(i) for i in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


def first_line(e: BaseException) -> str:
    """Return the first line of an error's text (of its cause, for a wrapped driver error)."""
    lines = str(getattr(e, "orig", None) or e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
