"""Several `eventcron run` on one PostgreSQL ledger: no double sends, nothing lost."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from eventcron.ledger import Filters, Ledger
from tests.acceptance.processes import (
    Proc,
    at_time,
    claimed_by_pid,
    fire_when_due,
    is_ready,
    rfc3339,
    start,
    start_sink,
    wait_for,
    write_config,
)
from tests.pg import postgres_url, reset_postgres

USERS = 6000
LEASE = 10.0  # seconds: delivery.claim_lease for this test


def statuses(url: str) -> Counter[str]:
    ledger = Ledger.open(url)
    try:
        return Counter(r.status for r in ledger.rows(Filters()))
    finally:
        ledger.close()


@pytest.mark.postgres
@pytest.mark.timeout(240)
@pytest.mark.slow
def test_three_instances_one_killed_every_user_delivered(tmp_path: Path) -> None:
    url = postgres_url()
    reset_postgres(url)
    sink = start_sink(tmp_path, "--latency", "50ms")
    at = at_time(5)
    (tmp_path / "campaign.csv").write_text(
        "app_user_id\n" + "".join(f"m{i:05d}\n" for i in range(USERS)))
    config = write_config(tmp_path, sink.url, f"""\
  - {{id: campaign, event_type: "campaign:launch", at: "{rfc3339(at)}", audience: everyone}}
""", audiences="  everyone: {file: campaign.csv}\n")
    config.write_text(config.read_text()
                      .replace("concurrency: 32", "concurrency: 8")
                      .replace("delivery:\n", f"delivery:\n  claim_lease: {LEASE:g}s\n"))
    env = {"EVENTCRON_DATABASE_URL": url}
    instances: list[Proc] = [start(["run"], tmp_path, f"run{i}", env=env) for i in range(3)]
    try:
        wait_for(lambda: all(is_ready(p) for p in instances), 120, "three instances ready")
        fired = fire_when_due(tmp_path, "campaign", at, env=env)
        wait_for(lambda: len(sink.delivered()) >= USERS // 3, 90, "a third of the campaign")
        victim = instances[0]
        victim.kill9()
        killed_at = time.monotonic()
        held = claimed_by_pid(url, victim.popen.pid)
        at_kill = len(sink.delivered())
        wait_for(lambda: not (claimed_by_pid(url, victim.popen.pid) & held), 120,
                 "the others to take over the dead instance's claims")
        takeover = time.monotonic() - killed_at
        wait_for(lambda: len({r["app_user_id"] for r in sink.delivered()}) == USERS, 120,
                 "every user delivered")
        wait_for(lambda: statuses(url) == Counter({"delivered": USERS}), 60,
                 "the ledger to agree")
    finally:
        codes = [p.stop() for p in instances[1:]]
        sink.proc.stop()
    assert codes == [0, 0]
    for p in instances:
        assert "Traceback" not in p.stderr()
    fires = [p.stderr().count("fired campaign@UTC") for p in instances]
    assert max(fires) <= 1
    # Who enqueued is timing (see the two-instance test below): every instance whose fire
    # overlapped another's, or `eventcron fire` when none was ready in time.
    assert sum(fires) >= 1 or fired.new == USERS
    got = sink.delivered()
    per_key = Counter(r["idempotency_key"] for r in got)
    keys_per_user: dict[str, set[str]] = {}
    for r in got:
        keys_per_user.setdefault(r["app_user_id"], set()).add(r["idempotency_key"])
    duplicates = {k for k, n in per_key.items() if n > 1}
    print(f"\n3 instances, {USERS} users; killed one after {at_kill} deliveries while it held"
          f" {len(held)} claims; delivered {len(keys_per_user)} users with {len(got)} requests:"
          f" {len(duplicates)} duplicates; the dead instance's claims were taken over"
          f" {takeover:.1f}s after the kill (claim_lease {LEASE:g}s); fired by the instances"
          f" {fires}, `eventcron fire` added {fired.new} rows")
    assert len(keys_per_user) == USERS
    assert all(len(keys) == 1 for keys in keys_per_user.values())  # same Idempotency-Key
    assert duplicates <= held  # only what the dead instance had in flight
    assert takeover >= LEASE - 1  # not before its lease ran out


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_two_instances_on_one_sqlite_file_never_double_send(tmp_path: Path) -> None:
    sink = start_sink(tmp_path, "--latency", "5ms")
    at = at_time(4)
    (tmp_path / "campaign.csv").write_text(
        "app_user_id\n" + "".join(f"s{i:05d}\n" for i in range(2000)))
    write_config(tmp_path, sink.url, f"""\
  - {{id: shared, event_type: "a:b", at: "{rfc3339(at)}", audience: everyone}}
""", audiences="  everyone: {file: campaign.csv}\n")
    instances = [start(["run"], tmp_path, f"run{i}") for i in range(2)]
    try:
        wait_for(lambda: all(is_ready(p) for p in instances), 120, "both instances ready")
        fired = fire_when_due(tmp_path, "shared", at)
        wait_for(lambda: len(sink.delivered()) >= 2000, 120, "the whole campaign")
    finally:
        codes = [p.stop() for p in instances]
        sink.proc.stop()
    assert codes == [0, 0]
    per_key = Counter(r["idempotency_key"] for r in sink.delivered())
    assert len(per_key) == 2000
    assert max(per_key.values()) == 1
    senders = [p.stderr().count("fired shared@UTC") for p in instances]
    assert max(senders) <= 1
    # Who enqueued is timing: both instances when their fires overlap (the unique key keeps
    # one row per user), one when the other took over only after it was done (a finished
    # fire is not repeated), `eventcron fire` when neither was ready before the time.
    assert sum(senders) >= 1 or fired.new == 2000
    print(f"\nfired by the instances {senders}; `eventcron fire` added {fired.new} rows")
