"""Run every benchmark: `python -m bench` (full, writes bench/RESULTS.md) or `--quick`.

`python -m bench --against REV` compares throughput instead: REV (any git revision, e.g.
the previous main) is checked out in a temporary git worktree and measured by its own
bench, alternating with this checkout in `--runs` pairs (old, new, old, new, ...); it
prints both medians, each pair's new/old ratio and the overall ratio. RESULTS.md is left
untouched. Needs nginx, like the throughput benchmark itself.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import against, campaign, cli_startup, fanout, lateness, prune, startup, throughput
from bench.common import Figure, git_revision, machine
from bench.nginx import nginx, nginx_binary

RESULTS = Path(__file__).parent / "RESULTS.md"
FULL = {"throughput": 100_000, "fanout": 1_000_000, "lateness": 1_000, "startup": 10_000,
        "prune": 1_000_000, "cli_startup": 21, "campaign": 1_000_000}
QUICK = {"throughput": 5_000, "fanout": 50_000, "lateness": 100, "startup": 1_000,
         "prune": 50_000, "cli_startup": 5, "campaign": 50_000}
NEED_NGINX = ("throughput", "lateness")  # the others never send a request
HEADER = ["figure", "measured", "target", "baseline (same run)", "ratio", "met"]


def table(figures: list[Figure]) -> str:
    rows = [HEADER, ["---"] * len(HEADER)] + [f.cells() for f in figures]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke-sized runs (seconds, not minutes); RESULTS.md untouched")
    parser.add_argument("--only", choices=sorted(FULL), action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--runs", type=int, default=5, help="throughput pairs to take the"
                        " median of (default 5; with --against, honoured with --quick too)")
    parser.add_argument("--against", metavar="REV", help="compare this checkout's throughput"
                        " with git revision REV's, each measured by its own bench")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.against is not None:
        if any(name != "throughput" for name in args.only or []):
            parser.error("--against compares throughput only")
        print("\n" + against.run(args.against, args.runs, args.quick) + "\n\n"
              + "\n".join(machine()))
        return
    sizes = QUICK if args.quick else FULL
    chosen = args.only or list(FULL)
    if any(name in NEED_NGINX for name in chosen):
        nginx_binary()  # fail early, with the install hint, if nginx is missing
    began = time.monotonic()
    about = machine()
    figures: list[Figure] = []
    for name in chosen:
        print(f"bench: {name} ({sizes[name]:,}) ...", flush=True)
        if name == "throughput":
            with nginx() as (url, _):
                figures += throughput.run(url, sizes[name], 1 if args.quick else args.runs)
        elif name == "fanout":
            figures += fanout.run(sizes[name])
        elif name == "lateness":
            figures += lateness.run(sizes[name])
        elif name == "prune":
            figures += prune.run(sizes[name])
        elif name == "campaign":
            figures += campaign.run(sizes[name])
        elif name == "cli_startup":
            figures += cli_startup.run(sizes[name])
        else:
            figures += startup.run(sizes[name])
    took = time.monotonic() - began
    out = table(figures)
    notes = "\n".join(f"- {f.name}: {f.note}" for f in figures if f.note)
    print("\n" + out + "\n\n" + notes + "\n\n" + "\n".join(about))
    print(f"\n{sum(1 for f in figures if f.met)} of {sum(1 for f in figures if f.met is not None)}"
          f" targets met; {took:.0f} s")
    if not args.quick and not args.only:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        RESULTS.write_text(
            f"# Benchmark results\n\nThe latest full run of `./dev bench` (`python -m bench`),"
            f" {stamp}, eventcron at {git_revision()}; it took {took:.0f} s.\nEvery baseline"
            " was measured in the same run, on the same machine, against the same receiver"
            " (nginx answering `return 200` on loopback).\n\n" + out + "\n\n## Details\n\n"
            + notes + "\n\n## Machine\n\n" + "\n".join(f"- {line}" for line in about) + "\n")
        print(f"bench: wrote {RESULTS}")


if __name__ == "__main__":
    main()
