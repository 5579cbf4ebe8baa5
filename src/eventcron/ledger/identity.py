"""Who holds a claim: this process's owner name, and whether another owner has died.

The owner name format (``host:pid:boot:pidns:nonce``) is written and read here only. This
module touches the operating system (host name, /proc, signals), never the database.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from pathlib import Path
from typing import Final, NamedTuple

UNKNOWN: Final = "-"  # an identity part (boot, pid namespace) this system does not tell


class Owner(NamedTuple):
    """Who holds a claim; its name ``host:pid:boot:pidns:nonce`` is written and read here only.

    A process id means something only within one PID namespace of one boot of one host:
    two containers sharing the host's network (so its name) and kernel (so its boot id)
    can both be PID 1. Names written before the namespace was part of them have four
    fields; they parse with ``pid_ns`` None.
    """

    host: str
    pid: int
    boot: str  # the first 8 characters of the boot id, or UNKNOWN
    pid_ns: str | None  # the PID namespace's inode number, UNKNOWN, or None (old name)
    nonce: str  # tells apart lives of one process id

    def format(self) -> str:
        """Return the name stored in ``claimed_by``."""
        ns = () if self.pid_ns is None else (self.pid_ns,)
        return ":".join((self.host, str(self.pid), self.boot, *ns, self.nonce))

    @classmethod
    def parse(cls, name: str) -> Owner | None:
        """Read a name written by :meth:`format` (of this or an earlier version), else None."""
        parts = name.split(":")
        if len(parts) not in (4, 5) or not parts[1].isdigit() or not all(parts):
            return None
        if len(parts) == 4:
            host, pid, boot, nonce = parts
            return cls(host, int(pid), boot, None, nonce)
        host, pid, boot, pid_ns, nonce = parts
        return cls(host, int(pid), boot, pid_ns, nonce)

    @classmethod
    def here(cls) -> Owner:
        """Return a new identity for this process, with a fresh nonce."""
        return cls(socket.gethostname(), os.getpid(), boot_id(), pid_namespace(),
                   uuid.uuid4().hex[:8])


def instance_name() -> str:
    """Return a new claim owner name for this process (see :class:`Owner`)."""
    return Owner.here().format()


def owner_is_dead(owner: str, me: str) -> bool:
    """Tell whether the claim owner named ``owner`` was a process here that died.

    ``me`` is this process's owner name. Only owners of this very host, boot and PID
    namespace are judged (elsewhere a process id means another process); any other, and
    any name of an earlier version (no namespace in it), waits for its lease to end.
    """
    theirs, mine = Owner.parse(owner), Owner.parse(me)
    if theirs is None or mine is None or owner == me:
        return False
    if (theirs.host, theirs.boot, theirs.pid_ns) != (mine.host, mine.boot, mine.pid_ns):
        return False
    if mine.pid_ns is None or UNKNOWN in (mine.boot, mine.pid_ns):
        return False  # this system does not say which boot or namespace we are in
    pid = theirs.pid
    if pid == mine.pid:
        return True  # our process id with another nonce: an earlier life of this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@functools.cache
def boot_id() -> str:
    """Return a short id of this boot of this machine (Linux), or "-" where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8] or UNKNOWN
    except OSError:
        return UNKNOWN


@functools.cache
def pid_namespace() -> str:
    """Return the identity of this process's PID namespace (Linux), or "-" where unknown.

    It is the inode number of ``/proc/self/ns/pid``, unique on the host while the
    namespace lives (``readlink`` shows it as ``pid:[4026531836]``).
    """
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return UNKNOWN
