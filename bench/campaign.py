"""Campaign rules: a million-user fire under a per-user cap and a 100,000-user opt-out list.

The same audience fired twice into fresh SQLite ledgers, each in a child process of its
own (so each peak resident memory is that fire's alone): once with no campaign rules (the
baseline, measured in the same run), once with ``limits.per_user: 1/day``, a suppression
file listing every tenth user, and quiet hours. Each is fired by the fan-out benchmark's
child (``python -m bench.fanout FOLDER 0``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Figure, write_csv
from bench.fanout import SCHEDULE

TARGET_RATIO = 2.0  # the rules may at most double the time of a fire
OPTED_OUT_SHARE = 10  # every tenth user is on the suppression list
# The same schedule under every rule, none of which skips the occurrence.
RULES = SCHEDULE.replace("version: 1\n", """\
version: 1
delivery:
  quiet_hours: {from: "21:00", to: "08:00"}
  expires_after: 12h
suppress: {file: optouts.csv}
limits: {per_user: 1/day}
""")


def _measure(folder: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.fanout", str(folder), "0"],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(users: int) -> list[Figure]:
    """Fire ``users`` users without and with the rules; return the figures."""
    root = Path(tempfile.mkdtemp(prefix="eventcron-bench-campaign-"))
    write_csv(root / "fan.csv", users, prefix="f")
    folders = {}
    for name, text in (("plain", SCHEDULE), ("rules", RULES)):
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
