"""What the machine's network set-up allows the tests to assume."""

from __future__ import annotations

import socket

import pytest


def _resolver_denies_unknown_names() -> bool:
    """Tell whether the resolver answers "no such name" for a reserved ``.invalid`` name.

    Without DNS at all the lookup fails otherwise ("temporary failure"), and eventcron
    rightly says "cannot look up host" instead of "no such host".
    """
    try:
        socket.getaddrinfo("eventcron-test.invalid", 443)
    except socket.gaierror as e:
        return e.errno == socket.EAI_NONAME
    return False


needs_resolver = pytest.mark.skipif(
    not _resolver_denies_unknown_names(),
    reason="the resolver does not answer 'no such name' for .invalid names (no DNS here)")
