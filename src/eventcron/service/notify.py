"""sd_notify(3) without a dependency: one datagram to ``$NOTIFY_SOCKET`` per message.

Under ``Type=notify`` systemd waits for ``READY=1``, shows ``STATUS=`` in ``systemctl
status``, kills the service when ``WATCHDOG=1`` stops arriving within ``WatchdogSec=``, and
tracks reloads by ``RELOADING=1`` (with ``MONOTONIC_USEC=``) followed by ``READY=1``.
Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Final

log = logging.getLogger("eventcron.notify")

SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"


class Notifier:
    """Sends state changes to systemd, if it is listening."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get(SOCKET_ENV)
        self._address: str | bytes | None = None
        self._socket: socket.socket | None = None
        if address:
            # "@name" is an abstract socket: its real name starts with a NUL byte.
            self._address = ("\0" + address[1:]).encode() if address.startswith("@") else address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop: if nobody reads the socket, drop the message.
            self._socket.setblocking(False)
        self._warned = False
        self._stopping = False

    @property
    def enabled(self) -> bool:
        """Tell whether there is a socket to notify."""
        return self._socket is not None

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` fields as one datagram; failures are logged once, not raised."""
        if self._socket is None or self._address is None or self._stopping:
            return  # after STOPPING=1 systemd must hear nothing more (no late READY=1)
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", os.environ.get(SOCKET_ENV),
                            e.strerror or e)

    def ready(self, status: str | None = None) -> None:
        """Say the service is up (or back up after a reload)."""
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        """Say a reload started, with the monotonic time systemd wants alongside."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """Say the service is shutting down; every later message is dropped."""
        self.send("STOPPING=1")
        self._stopping = True

    def status(self, text: str) -> None:
        """Set the one-line status ``systemctl status`` shows."""
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog."""
        self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval() -> float | None:
    """Return how often to ping the watchdog (half of ``WatchdogSec=``), or None if off."""
    usec = os.environ.get(WATCHDOG_USEC_ENV)
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = os.environ.get(WATCHDOG_PID_ENV)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process (we were forked)
    return int(usec) / 1_000_000 / 2
