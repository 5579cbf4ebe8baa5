"""Throughput of an older revision against this checkout, measured in the same run.

`python -m bench --against REV` checks REV out into a temporary git worktree and runs, in
alternating pairs, REV's own `python -m bench --only throughput --runs 1` and this
checkout's, each in a subprocess with its own tree first on PYTHONPATH. Nothing of REV is
imported here: module layouts differ between revisions, so each side is measured by its
own code and only the printed table row is read back. This module touches git (one
worktree) and child processes, all inside one temporary folder that is removed afterwards
(also on error, Ctrl-C or SIGTERM); it writes nothing in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.nginx import nginx_binary

ROOT = Path(__file__).resolve().parent.parent
# The row every revision's bench/throughput.py prints since the benchmark exists.
ROW = re.compile(r"^\| throughput, ([\d,]+)-user campaign end to end \| ([\d,.]+) deliveries/s \|",
                 re.MULTILINE)
# CPU time per delivery, all threads: less swayed than the rate by what else the machine runs.
CPU = re.compile(r"CPU per delivery \(all threads, median\) eventcron ([\d,.]+) us")
UNDELIVERED = "SOME ROWS WERE NOT DELIVERED"
CHILD_TIMEOUT = 3600.0  # seconds for one side of one pair; a hang must not last for ever
GRACE = 5.0  # seconds a child gets after SIGINT to stop its nginx before it is killed
CHECK = "import bench, eventcron; print(eventcron.__file__); print(bench.__file__)"


@dataclass(frozen=True)
class Side:
    """One tree to measure: what to call it, where it lives, where its children's TMPDIR go."""

    label: str
    tree: Path
    scratch: Path


@dataclass(frozen=True)
class Result:
    """One throughput run of one side, as its own bench printed it."""

    users: int
    rate: float
    complete: bool
    cpu_us: float | None  # None where that revision's bench does not print it


def git(*args: str) -> subprocess.CompletedProcess[str]:
    """Run git in this checkout, capturing its output; never raises on failure."""
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)


def resolve(rev: str) -> str:
    """Return REV's short commit id, or exit clearly if it is unknown or has no benchmark."""
    found = git("rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise SystemExit(f"bench: --against {rev}: no such git revision in {ROOT}")
    commit = found.stdout.strip()
    for path in ("bench/__main__.py", "bench/throughput.py"):
        if git("cat-file", "-e", f"{commit}:{path}").returncode != 0:
            raise SystemExit(f"bench: --against {rev}: that revision has no {path}")
    return commit


def registered(path: Path) -> bool:
    """Say whether git lists ``path`` as one of this repository's worktrees."""
    listing = git("worktree", "list", "--porcelain").stdout
    return f"worktree {path}" in listing.splitlines()


@contextmanager
def scratch() -> Iterator[Path]:
    """Yield a fresh temporary folder outside the checkout; remove it, and any worktree in it."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-against-")).resolve()
    try:
        # A worktree inside the checkout would be swept up by git status, ruff and pytest.
        if folder.is_relative_to(ROOT):
            raise SystemExit(f"bench: refusing worktree path {folder}: inside the checkout"
                             " (set TMPDIR to a folder outside it)")
        yield folder
    finally:
        tree = folder / "tree"
        if registered(tree):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(folder, ignore_errors=True)  # ours alone: mkdtemp made it
        if registered(tree):
            print(f"bench: could not remove worktree {tree}: run `git worktree prune`",
                  file=sys.stderr)


def check_out(commit: str, folder: Path) -> Path:
    """Check ``commit`` out, detached, as a new worktree in ``folder``; return its path."""
    tree = folder / "tree"
    added = git("worktree", "add", "--detach", str(tree), commit)
    if added.returncode != 0:
        raise SystemExit(f"bench: git worktree add failed: {added.stderr.strip()}")
    return tree


def environment(tree: Path, tmp: Path) -> dict[str, str]:
    """The environment for a child measuring ``tree``: its src and bench ahead of all else.

    eventcron is installed editable from the main checkout, so without this the old
    revision's bench would import today's eventcron. TMPDIR is the child's own, so what
    it leaves behind (a killed nginx's folder, a campaign's files) goes when ``tmp`` does.
    """
    env = dict(os.environ, TMPDIR=str(tmp))
    first = [str(tree / "src"), str(tree)]
    env["PYTHONPATH"] = os.pathsep.join(first + ([env["PYTHONPATH"]]
                                                 if env.get("PYTHONPATH") else []))
    return env


def stop(proc: subprocess.Popen[str]) -> None:
    """Interrupt a child (it stops its own nginx), then kill whatever is left of its group."""
    with suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=GRACE)
    # The group is the child's own session: this reaches its nginx and nothing else.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def child(side: Side, args: list[str], timeout: float) -> str:
    """Run ``python args`` in ``side``'s tree; return its stdout, or exit with its stderr."""
    tmp = Path(tempfile.mkdtemp(dir=side.scratch))
    # Its own session: Ctrl-C reaches us alone, and stop() ends the child and its nginx.
    proc = subprocess.Popen([sys.executable, *args], cwd=side.tree,
                            env=environment(side.tree, tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise SystemExit(f"bench: {side.label} took over {timeout:.0f} s; stopped") from None
    except BaseException:
        stop(proc)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise SystemExit(f"bench: {side.label} failed (exit {proc.returncode}):\n{tail}")
    return out


def check_imports(side: Side) -> None:
    """Exit unless the child for ``side`` imports eventcron and bench from that tree."""
    paths = [Path(line).resolve() for line in child(side, ["-c", CHECK], 60).split()]
    expected = [side.tree / "src" / "eventcron", side.tree / "bench"]
    for path, where in zip(paths, expected, strict=True):
        if not path.is_relative_to(where):
            raise SystemExit(f"bench: {side.label} would import {path}, not from {where};"
                             " check PYTHONPATH and how eventcron is installed")


def measure(side: Side, quick: bool) -> Result:
    """Run ``side``'s own throughput benchmark once and read its figure back."""
    out = child(side, ["-m", "bench", "--only", "throughput", "--runs", "1",
                       *(["--quick"] if quick else [])], CHILD_TIMEOUT)
    row = ROW.search(out)
    if row is None:
        raise SystemExit(f"bench: no throughput row in {side.label}'s output:\n{out[-2000:]}")
    cpu = CPU.search(out)
    return Result(int(row[1].replace(",", "")), float(row[2].replace(",", "")),
                  UNDELIVERED not in out, float(cpu[1].replace(",", "")) if cpu else None)


def report(old: Side, new: Side, pairs: list[tuple[Result, Result]]) -> str:
    """The comparison table: each pair, the medians, and the new/old ratios."""
    def cell(r: Result) -> str:
        return f"{r.rate:,.0f}" + ("" if r.complete else " (NOT ALL DELIVERED)")

    def us(r: Result) -> str:
        return "" if r.cpu_us is None else f"{r.cpu_us:,.0f}"

    ratios = [n.rate / o.rate for o, n in pairs]
    olds = statistics.median(o.rate for o, _ in pairs)
    news = statistics.median(n.rate for _, n in pairs)
    rows = [["run", f"old: {old.label}", f"new: {new.label}", "new/old",
             "CPU us/delivery, old", "new"], ["---"] * 6]
    rows += [[f"pair {i}", cell(o), cell(n), f"{r:.2f}x", us(o), us(n)]
             for i, ((o, n), r) in enumerate(zip(pairs, ratios, strict=True), 1)]
    cpus = [(o.cpu_us, n.cpu_us) for o, n in pairs
            if o.cpu_us is not None and n.cpu_us is not None]
    cpu_cells = ([f"{statistics.median(o for o, _ in cpus):,.0f}",
                  f"{statistics.median(n for _, n in cpus):,.0f}"] if cpus else ["", ""])
    rows.append(["median", f"{olds:,.0f}", f"{news:,.0f}",
                 f"{news / olds:.2f}x (median of pair ratios {statistics.median(ratios):.2f}x)",
                 *cpu_cells])
    users = pairs[0][0].users
    return (f"throughput, {users:,}-user campaign end to end, deliveries/s; {len(pairs)}"
            " pair(s), old then new, each side measured by its own bench\n\n"
            + "\n".join("| " + " | ".join(row) + " |" for row in rows))


def run(rev: str, runs: int, quick: bool) -> str:
    """Compare REV's throughput with this checkout's in ``runs`` pairs; return the table."""
    commit = resolve(rev)
    nginx_binary()  # exits with the install hint; both sides need it
    previous = signal.signal(signal.SIGTERM, _terminate)  # so the worktree is removed
    try:
        with scratch() as folder:
            old = Side(commit, check_out(commit, folder), folder)
            new = Side(_this_checkout(), ROOT, folder)
            for side in (old, new):
                check_imports(side)
            pairs = [measure_pair(old, new, i, runs, quick) for i in range(1, runs + 1)]
    except KeyboardInterrupt:
        print("\nbench: interrupted; worktree removed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return report(old, new, pairs)


def measure_pair(old: Side, new: Side, i: int, runs: int, quick: bool) -> tuple[Result, Result]:
    """Measure old, then new, printing each figure as it comes."""
    results = []
    for side in (old, new):
        print(f"bench: pair {i}/{runs}, {side.label} ...", end=" ", flush=True)
        try:
            results.append(measure(side, quick))
        except BaseException:
            print(flush=True)  # end the progress line before the error
            raise
        print(f"{results[-1].rate:,.0f} deliveries/s", flush=True)
    o, n = results
    if o.users != n.users:
        raise SystemExit(f"bench: the revisions measure different campaigns ({o.users:,} and"
                         f" {n.users:,} users); not comparable")
    return o, n


def _this_checkout() -> str:
    head = git("rev-parse", "--short", "HEAD").stdout.strip()
    dirty = git("status", "--porcelain", "--", "src", "bench").stdout.strip()
    return head + (" + uncommitted changes" if dirty else "")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
