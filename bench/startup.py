"""Start-up: ten thousand schedules loaded, validated and scheduled."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Figure

TARGET_SECONDS = 3.0  # for ten thousand schedules
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo", "Australia/Lord_Howe",
         "America/Santiago")
CRONS = ("{m} {h} * * 1-5", "{m} */2 * * *", "{m} {h} 1,15 * 5", "*/5 * * * *", "@daily",
         "{m} {h} * jan-jun mon")


def write(folder: Path, schedules: int) -> Path:
    """Write a file of varied schedules (crons, zones, placeholders, windows)."""
    rng = random.Random(11)
    lines = ["version: 1", "schedules:"]
    for i in range(schedules):
        cron = rng.choice(CRONS).format(m=rng.randrange(60), h=rng.randrange(24))
        lines += [f"  - id: s{i:05d}", f"    event_type: \"reminder:n{i % 50}\"",
                  f"    cron: \"{cron}\"", f"    timezone: {rng.choice(ZONES)}",
                  f"    users: [u{i}, {{id: v{i}, first_name: Ada}}]",
                  "    data: {campaign: c, due: \"${scheduled_for}\"}",
                  "    jitter: 30s"]
    path = folder / "schedules.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child(path: Path) -> dict[str, float]:
    """Load, validate, plan and schedule every job, as `eventcron run` does at start."""
    from datetime import UTC, datetime

    from eventcron import config
    from eventcron.firing import plan
    from eventcron.firing.scheduler import Clockwork

    began = time.perf_counter()
    cfg = config.load(path)
    loaded = time.perf_counter() - began
    jobs = plan.jobs(cfg)
    clockwork = Clockwork(lambda _key, _t: None)
    now = datetime.now(UTC)
    for job in jobs:
        clockwork.set_job(job.key, job.timing, now)
    nexts = [job.timing.next_after(now) for job in jobs]
    total = time.perf_counter() - began
    return {"load": loaded, "total": total, "jobs": len(jobs),
            "with_next": sum(1 for t in nexts if t is not None)}


def run(schedules: int) -> list[Figure]:
    """Measure start-up in a fresh interpreter; the baseline is a bare YAML parse."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-start-"))
    path = write(folder, schedules)
    out = subprocess.run([sys.executable, "-m", "bench.startup", str(path)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    began = time.perf_counter()
    yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    parse = time.perf_counter() - began
    target = TARGET_SECONDS * schedules / 10_000
    return [Figure(f"start-up, {schedules:,} schedules: load, validate, schedule",
                   got["total"], "s", f"<= {target:g} s",
                   got["total"] <= target and got["jobs"] == schedules,
                   f"PyYAML (libyaml) parse alone: {parse:.2f} s", parse / got["total"],
                   note=f"of which reading and validating the file {got['load']:.2f} s;"
                        f" {got['jobs']:,} jobs")]


if __name__ == "__main__":
    print(json.dumps(child(Path(sys.argv[1]))))
