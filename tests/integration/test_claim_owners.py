"""At start, only claims of dead processes of this host, boot and PID namespace are released."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventcron.ledger import UNKNOWN, Ledger, NewRow, Owner, instance_name, owner_is_dead
from tests.unit.test_owner import no_such_pid

T0 = 1_790_000_000_000  # ms: a fixed "now"


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="Linux only")
def test_claims_of_other_pid_namespaces_and_old_names_are_kept(ledger_url: str) -> None:
    me = instance_name()
    mine = Owner.parse(me)
    assert mine is not None and UNKNOWN not in (mine.boot, mine.pid_ns)
    gone = no_such_pid()
    owners = {
        "dead": mine._replace(pid=gone, nonce="dead").format(),
        # Another container with the host's name and boot: its pid is not ours to check.
        "elsewhere": mine._replace(pid=gone, pid_ns="4026532999", nonce="else").format(),
        "old": Owner(mine.host, gone, mine.boot, None, "old").format(),  # an earlier version
        "me": me,
    }
    ledger = Ledger.open(ledger_url)
    try:
        ledger.enqueue([NewRow("s", f"u_{who}", "e:t", T0, "{}", T0, T0 + 3_600_000)
                        for who in owners], T0)
        for name in owners.values():
            assert len(ledger.claim(name, T0, 1, 600_000)) == 1
        assert ledger.release_dead_owners(lambda owner: owner_is_dead(owner, me)) == 1
        # Only the dead one's row is free again; the others wait for their leases.
        (freed,) = ledger.claim("next", T0 + 1, 10, 600_000)
        assert freed.app_user_id == "u_dead"
    finally:
        ledger.close()
