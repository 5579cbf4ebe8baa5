"""`eventcron run` as a process: firing, delivering, kill -9, restart."""

from __future__ import annotations

import json
import subprocess
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.acceptance.conftest import eventcron_command
from tests.acceptance.processes import (
    at_time,
    claimed_by_pid,
    clean_env,
    fire_when_due,
    is_ready,
    rfc3339,
    start,
    start_sink,
    wait_for,
    write_config,
)


def deliveries(folder: Path) -> list[dict[str, object]]:
    out = subprocess.run([eventcron_command(), "deliveries", "--json", "--limit", "0"],
                         cwd=folder, env=clean_env(), capture_output=True, text=True,
                         timeout=60, check=True)
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_run_fires_an_every_schedule_to_many_users_exactly_once(tmp_path: Path) -> None:
    sink = start_sink(tmp_path)
    users = ", ".join(f"u{i:04d}" for i in range(300))
    write_config(tmp_path, sink.url, f"""\
  - id: pulse
    event_type: "pulse:tick"
    every: 3s
    users: [{users}]
    data: {{n: "${{app_user_id}}"}}
""")
    daemon = start(["run"], tmp_path, "run")
    try:
        # Two occurrences for every user.
        wait_for(lambda: len(sink.delivered()) >= 600, 60, "600 deliveries")
    finally:
        code = daemon.stop()
        sink.proc.stop()
    assert code == 0, daemon.stderr()
    assert "Traceback" not in daemon.stderr()
    assert "eventcron stopped after" in daemon.stderr()
    got = sink.delivered()
    keys: dict[str, int] = defaultdict(int)
    for r in got:
        keys[r["idempotency_key"]] += 1
    assert max(keys.values()) == 1, "an occurrence reached the receiver twice"
    rows = deliveries(tmp_path)
    delivered_ids = {r["event_id"] for r in rows if r["status"] == "delivered"}
    assert delivered_ids == set(keys)
    assert all(r["data"] == {"n": r["app_user_id"]} for r in rows)
    per_user: dict[str, set[str]] = defaultdict(set)
    for r in got:
        per_user[r["app_user_id"]].add(r["data"]["n"])
    assert len(per_user) == 300


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_kill_9_mid_campaign_then_restart_delivers_everyone(tmp_path: Path) -> None:
    n = 3000
    sink = start_sink(tmp_path, "--latency", "20ms")
    at = at_time(3)
    (tmp_path / "campaign.csv").write_text(
        "app_user_id,plan\n" + "".join(f"c{i:05d},p{i % 3}\n" for i in range(n)))
    write_config(tmp_path, sink.url, f"""\
  - id: campaign
    event_type: "campaign:launch"
    at: "{rfc3339(at)}"
    audience: everyone
    data: {{plan: "${{user.plan}}"}}
""", audiences="  everyone: {file: campaign.csv}\n")
    first = start(["run"], tmp_path, "run1")
    try:
        wait_for(lambda: is_ready(first), 120, "the daemon to be ready")
        if datetime.now(UTC) >= at:
            # Ready too late (a loaded machine): it skipped the occurrence; send it. A
            # daemon ready in time fires it by itself, and is killed while it sends.
            fire_when_due(tmp_path, "campaign", at)
        wait_for(lambda: len(sink.delivered()) >= n // 3, 60, "a third of the campaign")
        first.kill9()
    finally:
        if first.popen.poll() is None:
            first.kill9()
    at_kill = len(sink.delivered())
    held = claimed_by_pid(f"sqlite:///{tmp_path / 'eventcron.db'}", first.popen.pid)
    second = start(["run"], tmp_path, "run2")
    try:
        wait_for(lambda: len({r["app_user_id"] for r in sink.delivered()}) == n, 120,
                 "every user delivered after the restart")
        wait_for(lambda: all(r["status"] == "delivered" for r in deliveries(tmp_path)), 30,
                 "the ledger to record every delivery")
    finally:
        code = second.stop()
        sink.proc.stop()
    assert code == 0, second.stderr()
    assert "Traceback" not in first.stderr() + second.stderr()
    got = sink.delivered()
    keys_per_user: dict[str, set[str]] = defaultdict(set)
    for r in got:
        keys_per_user[r["app_user_id"]].add(r["idempotency_key"])
    assert len(keys_per_user) == n
    assert all(len(keys) == 1 for keys in keys_per_user.values())
    rows = deliveries(tmp_path)
    assert len(rows) == n
    per_key = Counter(r["idempotency_key"] for r in got)
    repeated = {k for k, count in per_key.items() if count > 1}
    print(f"\nkill -9 after {at_kill} of {n} deliveries, holding {len(held)} claims; after"
          f" restart: {len(got)} delivered requests, {len(got) - n} duplicates (same"
          f" Idempotency-Key), attempts total"
          f" {sum(int(r['attempts']) for r in rows)}")  # type: ignore[call-overload]
    # Only what the killed process held (sent, answer not yet recorded) can repeat.
    assert repeated <= held
