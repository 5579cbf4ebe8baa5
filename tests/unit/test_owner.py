"""Claim owner names: their one format, and whose claims are judged dead."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from eventcron.ledger import UNKNOWN, Owner, boot_id, instance_name, owner_is_dead, pid_namespace

BOOT, NS = "b00710ad", "4026531836"


def no_such_pid() -> int:
    """A process id no process can have: above the kernel's limit."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**22 + 1  # the largest limit Linux allows, plus one


def name(pid: int, *, host: str = "box", boot: str = BOOT, ns: str | None = NS,
         nonce: str = "other") -> str:
    return Owner(host, pid, boot, ns, nonce).format()


ME = name(os.getpid(), nonce="me")  # as this process on host "box"


def test_format_and_parse_are_one_format() -> None:
    owner = Owner("box", 4242, BOOT, NS, "a1b2c3d4")
    assert owner.format() == f"box:4242:{BOOT}:{NS}:a1b2c3d4"
    assert Owner.parse(owner.format()) == owner
    # Four fields: a name from before the PID namespace was part of it.
    old = Owner.parse(f"box:4242:{BOOT}:a1b2c3d4")
    assert old == Owner("box", 4242, BOOT, None, "a1b2c3d4")
    assert old is not None and old.format() == f"box:4242:{BOOT}:a1b2c3d4"
    for junk in ("garbage", "dead", "box:pid:b:n:x", "box:1:b", "box:1:b:n:x:y", "box::b:n:x",
                 "box:1:b::x", ""):
        assert Owner.parse(junk) is None, junk


def test_this_process_names_its_host_pid_boot_and_pid_namespace() -> None:
    me = Owner.parse(instance_name())
    assert me is not None
    assert (me.host, me.pid, me.boot) == (socket.gethostname(), os.getpid(), boot_id())
    assert me.pid_ns == pid_namespace()
    if Path("/proc/self/ns/pid").exists():
        link = os.readlink("/proc/self/ns/pid")  # pid:[4026531836]
        assert link == f"pid:[{me.pid_ns}]"
    assert instance_name() != instance_name()  # a fresh nonce each time


def test_only_dead_processes_of_this_host_boot_and_pid_namespace_are_judged() -> None:
    gone = no_such_pid()
    assert not owner_is_dead(ME, ME)
    # Our own pid with another nonce: an earlier life of this process id, gone.
    assert owner_is_dead(name(os.getpid()), ME)
    assert owner_is_dead(name(gone), ME)  # no such process here
    assert not owner_is_dead(name(1), ME)  # pid 1 is alive
    assert not owner_is_dead(name(gone, boot="another"), ME)  # another boot or machine
    assert not owner_is_dead(name(gone, host="elsewhere"), ME)
    assert not owner_is_dead("garbage", ME)


def test_an_owner_in_another_pid_namespace_is_never_judged() -> None:
    # Two containers sharing the host's name and boot: its pid means another process.
    assert not owner_is_dead(name(no_such_pid(), ns="4026532999"), ME)
    assert not owner_is_dead(name(os.getpid(), ns="4026532999"), ME)  # both can be pid N
    assert not owner_is_dead(name(1, ns="4026532999"), ME)


def test_old_names_and_unknown_identities_wait_for_their_lease() -> None:
    gone = no_such_pid()
    # A name without a namespace, from an earlier version: its pid could be anyone's.
    assert not owner_is_dead(name(gone, ns=None), ME)
    assert not owner_is_dead(name(os.getpid(), ns=None), ME)
    # Where this system does not tell the boot or the namespace, nothing is certain.
    for boot, ns in ((UNKNOWN, NS), (BOOT, UNKNOWN)):
        me = name(os.getpid(), boot=boot, ns=ns, nonce="me")
        assert not owner_is_dead(name(gone, boot=boot, ns=ns), me)


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="Linux only")
def test_this_process_judges_its_own_earlier_lives() -> None:
    me = instance_name()
    mine = Owner.parse(me)
    assert mine is not None and UNKNOWN not in (mine.boot, mine.pid_ns)
    assert owner_is_dead(mine._replace(nonce="earlier").format(), me)
    assert owner_is_dead(mine._replace(pid=no_such_pid()).format(), me)
    assert not owner_is_dead(mine._replace(pid=no_such_pid(), pid_ns="1").format(), me)
