"""Campaign rules: a million-user fire under a per-user cap and a 100,000-user opt-out list.

The same audience fired twice into fresh SQLite ledgers, each in a child process of its
own (so each peak resident memory is that fire's alone): once with no campaign rules (the
baseline, measured in the same run), once with ``limits.per_user: 1/day``, a suppression
file listing every tenth user, and quiet hours. ``python -m bench.campaign FOLDER``
prints one JSON line for the file in FOLDER.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import Figure, write_csv
from eventcron import config
from eventcron.clock import SystemClock
from eventcron.firing import plan
from eventcron.firing.firer import Firer
from eventcron.ledger import Ledger, LedgerThread

TARGET_RATIO = 2.0  # the rules may at most double the time of a fire
OPTED_OUT_SHARE = 10  # every tenth user is on the suppression list

PLAIN = """\
version: 1
audiences:
  fans: {file: fan.csv}
schedules:
  - {id: fan, event_type: "bench:fan", cron: "0 0 1 1 *", audience: fans,
     data: {plan: "${user.plan}"}}
"""

RULES = """\
version: 1
delivery:
  quiet_hours: {from: "21:00", to: "08:00"}
  expires_after: 12h
suppress: {file: optouts.csv}
limits: {per_user: 1/day}
audiences:
  fans: {file: fan.csv}
schedules:
  - {id: fan, event_type: "bench:fan", cron: "0 0 1 1 *", audience: fans,
     data: {plan: "${user.plan}"}}
"""


def child(folder: Path) -> dict[str, float]:
    """Validate the file, then fire once; report times, rows by state and peak RSS."""
    began = time.perf_counter()
    cfg = config.load(folder / "schedules.yaml")
    validated = time.perf_counter() - began
    (job,) = plan.jobs(cfg)
    ledger = Ledger.open(cfg.database)
    db = LedgerThread(ledger)
    nominal = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)

    async def fire() -> int:
        from eventcron.campaign import Rules

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


def _measure(folder: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.campaign", str(folder)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(users: int) -> list[Figure]:
    """Fire ``users`` users without and with the rules; return the figures."""
    root = Path(tempfile.mkdtemp(prefix="eventcron-bench-campaign-"))
    write_csv(root / "fan.csv", users, prefix="f")
    folders = {}
    for name, text in (("plain", PLAIN), ("rules", RULES)):
        folder = folders[name] = root / name
        folder.mkdir()
        (folder / "fan.csv").symlink_to(root / "fan.csv")
        (folder / "schedules.yaml").write_text(text)
    with (folders["rules"] / "optouts.csv").open("w") as f:
        f.write("app_user_id\n")
        f.writelines(f"f{i:07d}\n" for i in range(0, users, OPTED_OUT_SHARE))
    plain = _measure(folders["plain"])
    rules = _measure(folders["rules"])
    opted = len(range(0, users, OPTED_OUT_SHARE))
    ratio = rules["fire"] / plain["fire"]
    ok = (rules["suppressed"] == opted and rules["pending"] == users - opted
          and plain["pending"] == users)
    return [
        Figure(f"fire of {users:,} users under a 1/day cap, {opted:,} opted out, quiet hours",
               rules["fire"], "s", f"<= {TARGET_RATIO:g}x the plain fire",
               ok and ratio <= TARGET_RATIO,
               f"the same fire without rules: {plain['fire']:.1f} s", ratio,
               note=f"{rules['pending']:,.0f} pending and {rules['suppressed']:,.0f}"
                    f" suppressed rows; validating took {rules['validate']:.1f} s"
                    f" against {plain['validate']:.1f} s"),
        Figure("peak RSS of that fire (validate + fire)", rules["rss_mb"], "MB",
               f"<= {TARGET_RATIO:g}x the plain fire's",
               rules["rss_mb"] <= TARGET_RATIO * plain["rss_mb"],
               f"without rules: {plain['rss_mb']:.0f} MB", rules["rss_mb"] / plain["rss_mb"]),
    ]


if __name__ == "__main__":
    print(json.dumps(child(Path(sys.argv[1]))))
