"""Fan-out: one fire of a million-user CSV audience into the SQLite ledger.

Measured in a child process, so its peak resident memory is the daemon's own and nothing
of the benchmark's: ``python -m bench.fanout FOLDER USERS`` prints a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import Figure, write_csv
from eventcron import config
from eventcron.campaign import Rules
from eventcron.clock import SystemClock
from eventcron.firing import plan
from eventcron.firing.firer import Firer
from eventcron.ledger import Ledger, LedgerThread, event_id

TARGET_SECONDS = 10.0  # for a million users
TARGET_RSS_MB = 300.0
# One schedule over the CSV audience fan.csv, with a templated field per user.
SCHEDULE = """\
version: 1
audiences:
  fans: {file: fan.csv}
schedules:
  - {id: fan, event_type: "bench:fan", cron: "0 0 1 1 *", audience: fans,
     data: {plan: "${user.plan}"}}
"""


def child(folder: Path, users: int) -> dict[str, float]:
    """Validate the file, then fire once; report times and peak RSS (run in a child)."""
    began = time.perf_counter()
    cfg = config.load(folder / "schedules.yaml")
    validated = time.perf_counter() - began
    (job,) = plan.jobs(cfg)
    ledger = Ledger.open(cfg.database)
    db = LedgerThread(ledger)
    nominal = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)

    async def fire() -> int:
        # The daemon's way: with the file's campaign rules (none in a plain file, and then
        # firing takes its fast path); bench/campaign.py fires a file with rules.
        firer = Firer(db, SystemClock(), cfg.delivery, lambda: None, rules=Rules(cfg))
        return (await firer.fire(job, nominal)).added

    began = time.perf_counter()
    added = asyncio.run(fire())
    fired = time.perf_counter() - began
    counts = ledger.counts()
    db.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"validate": validated, "fire": fired, "added": added, "rss_mb": rss_mb,
            "pending": counts.get("pending", 0), "suppressed": counts.get("suppressed", 0)}


def baseline(folder: Path, users: int) -> float:
    """Plain sqlite3: insert the same rows, precomputed, into the same schema (the floor)."""
    url = f"sqlite:///{folder / 'baseline.db'}"
    Ledger.open(url).close()
    now = int(time.time() * 1000)
    rows = [(event_id("fan", f"f{i:07d}", "bench:fan", now), "fan", f"f{i:07d}", "bench:fan",
             now, '{"plan":"p1"}', now, now + 3_600_000, now, now) for i in range(users)]
    conn = sqlite3.connect(folder / "baseline.db")
    began = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO deliveries (event_id, schedule_id, app_user_id, event_type,"
                     " scheduled_for, data, next_attempt_at, expires_at, created_at,"
                     " updated_at, status, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,'pending',0)",
                     rows)
    conn.commit()
    took = time.perf_counter() - began
    conn.close()
    return took


def run(users: int) -> list[Figure]:
    """Fire once for ``users`` users; return the figures."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-fan-"))
    write_csv(folder / "fan.csv", users, prefix="f")
    (folder / "schedules.yaml").write_text(SCHEDULE)
    out = subprocess.run([sys.executable, "-m", "bench.fanout", str(folder), str(users)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    floor = baseline(folder, users)
    scale = users / 1_000_000
    time_target = TARGET_SECONDS * scale
    return [
        Figure(f"fan-out, {users:,} users from CSV into SQLite", got["fire"], "s",
               f"<= {time_target:g} s", got["fire"] <= time_target and got["added"] == users,
               f"plain sqlite3 insert of the same rows: {floor:.1f} s", floor / got["fire"],
               note=f"{got['added']:,.0f} rows added; validating the file (a full scan of the"
                    f" CSV) took {got['validate']:.1f} s more"),
        Figure("fan-out peak RSS (validate + fire)", got["rss_mb"], "MB",
               f"<= {TARGET_RSS_MB:g} MB", got["rss_mb"] <= TARGET_RSS_MB),
    ]


if __name__ == "__main__":
    print(json.dumps(child(Path(sys.argv[1]), int(sys.argv[2]))))
