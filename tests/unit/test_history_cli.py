"""`history` and `status` as a person and a program read them: rendering, liveness, options.

The commands run in-process through ``main()`` on a real SQLite file; time is an input
(``now``) for everything that renders it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventcron.cli import main
from eventcron.cli.history import by_hand_identity, entry_json, instance_label, table
from eventcron.cli.operate import _instance_json, _who_sends, liveness
from eventcron.ledger import HistoryEntry, Instance, Ledger
from eventcron.states import STATUSES

T0 = 1_790_000_000_000  # ms: 2026-09-21T14:13:20Z
OWNER = "box:4242:abcd1234:4026531836:0badf00d"
NONE = dict.fromkeys(STATUSES, 0)
PLAN = "3f2a9c1e" + "0" * 56


def entry(**changes: object) -> HistoryEntry:
    base: dict[str, object] = {
        "schedule_id": "checkin", "zone": "Europe/Berlin", "scheduled_for": T0,
        "status": "fired", "reason": None, "instance": OWNER, "rows": 3,
        "counts": {**NONE, "delivered": 2, "pending": 1}, "first_delivered_at": T0 + 412,
        "last_delivered_at": T0 + 61_000}
    return HistoryEntry(**{**base, **changes})  # type: ignore[arg-type]


def instance(name: str = OWNER, *, host: str = "box", pid: int = 4242, started: int = T0,
             seen: int = T0, stopped: int | None = None, paused: bool = False) -> Instance:
    return Instance(name, host, pid, "0.1.0", started, seen, stopped, paused, PLAN)


# --- the JSON object and the table ----------------------------------------------------------


def test_an_occurrence_as_json_has_exactly_the_documented_fields() -> None:
    assert entry_json(entry()) == {
        "schedule": "checkin", "occurrence": "2026-09-21T14:13:20Z",
        "timezone": "Europe/Berlin", "local": "2026-09-21T16:13:20+02:00",
        "outcome": "fired", "reason": None, "instance": OWNER, "rows": 3,
        "counts": {**NONE, "delivered": 2, "pending": 1},
        "first_delivery_s": 0.412, "last_delivery_s": 61.0}
    skipped = entry_json(entry(status="skipped", reason="catch_up_mode is none", rows=0,
                               counts=NONE, first_delivered_at=None, last_delivered_at=None))
    assert (skipped["outcome"], skipped["reason"], skipped["first_delivery_s"]) == (
        "skipped", "catch_up_mode is none", None)


def test_a_zone_this_machine_lacks_is_shown_in_utc() -> None:
    assert entry_json(entry(zone="Mars/Olympus_Mons"))["local"] == "2026-09-21T14:13:20+00:00"


def test_the_table_is_aligned_and_says_what_became_of_the_rows() -> None:
    lines = table([
        entry(),
        entry(schedule_id="heartbeat", zone="UTC", status="skipped", rows=0, counts=NONE,
              reason="missed by more than catch_up (1h)", instance=None,
              first_delivered_at=None, last_delivered_at=None, scheduled_for=T0 - 900_000),
        entry(schedule_id="launch", zone="UTC", instance=by_hand_identity(),
              counts={**NONE, "failed": 1, "expired": 2}, last_delivered_at=T0 + 7_300_000),
    ])
    assert lines[0].split() == ["LOCAL", "TIME", "SCHEDULE@ZONE", "OUTCOME", "ROWS", "FIRST",
                                "LAST", "BY", "ROWS", "BY", "STATE;", "REASON"]
    fired, skipped, by_hand = lines[1:]
    assert fired.startswith("2026-09-21 16:13:20+02:00  checkin@Europe/Berlin  fired")
    assert fired.endswith("3  0.4 s  61 s  box pid 4242  1 pending, 2 delivered")
    assert skipped.endswith("0      -     -  -             missed by more than catch_up (1h)")
    assert "heartbeat@UTC" in skipped and " skipped " in skipped
    assert " 2 h  fire by " in by_hand and by_hand.endswith("1 failed, 2 expired")
    # Columns line up: each row's OUTCOME starts where the header's does.
    column = lines[0].index("OUTCOME")
    assert {line[column:].split()[0] for line in lines[1:]} == {"fired", "skipped"}


@pytest.mark.parametrize(("name", "label"), [
    (OWNER, "box pid 4242"),
    ("eventcron fire by ada on box pid 99", "fire by ada"),
    (None, "-"),
    ("something else", "something else"),
])
def test_who_did_it_in_short(name: str | None, label: str) -> None:
    assert instance_label(name) == label


def test_fire_by_hand_names_the_operator_the_host_and_the_process() -> None:
    me = by_hand_identity()
    assert me.startswith("eventcron fire by ") and " on " in me and " pid " in me
    assert instance_label(me).startswith("fire by ")


# --- liveness -------------------------------------------------------------------------------


def test_liveness_of_one_running_instance() -> None:
    now = T0 + 3 * 3_600_000
    assert liveness([instance(seen=now - 2_000)], now) == (
        "running: 1 instance (box pid 4242, up 3 h, last seen 2 s ago, plan 3f2a9c1e…)")


def test_liveness_lists_every_running_instance_and_a_pause() -> None:
    now = T0 + 600_000
    line = liveness([instance(seen=now - 1_000),
                     instance("other", host="b2", pid=7, seen=now - 4_000, paused=True),
                     instance("old", host="b3", pid=8, seen=T0, stopped=T0)], now)
    assert line == ("running: 2 instances (box pid 4242, up 10 min, last seen 1 s ago, plan"
                    " 3f2a9c1e…; b2 pid 7, up 10 min, last seen 4 s ago, plan 3f2a9c1e…,"
                    " paused: token refused)")


def test_liveness_of_a_stopped_a_crashed_and_no_instance() -> None:
    stopped = liveness([instance(seen=T0, stopped=T0)], T0 + 86_400_000)
    assert stopped == "not running: last seen 2026-09-21 14:13 UTC, box pid 4242 (stopped)"
    # Not seen for 5 minutes and never marked stopped: it died without a word.
    crashed = liveness([instance(seen=T0)], T0 + 300_000)
    assert crashed == ("not running: last seen 2026-09-21 14:13 UTC, box pid 4242 (no"
                       " heartbeat for 5 min: crashed or cut off)")
    # Within the alive window a silent instance still counts as running.
    assert liveness([instance(seen=T0)], T0 + 29_000).startswith("running: 1 instance")
    assert liveness([], T0) == "not running: no instance has used this ledger yet"
    # Of several silent instances, the one seen last tells (the ledger lists it first).
    assert liveness([instance("new", pid=2, seen=T0), instance(pid=1, seen=T0 - 9_000_000,
                                                                stopped=T0 - 9_000_000)],
                    T0 + 300_000).endswith("box pid 2 (no heartbeat for 5 min: crashed or"
                                           " cut off)")


def test_fire_says_the_same_liveness_then_what_happens_to_the_rows() -> None:
    now = T0 + 60_000
    alive, gone = instance(seen=now - 1_000), instance(seen=T0, stopped=T0)
    assert _who_sends([alive], now, PLAN).splitlines() == [
        liveness([alive], now), "A running instance will send them."]
    assert _who_sends([gone], now, PLAN).splitlines() == [
        liveness([gone], now), "No instance is running: the rows wait pending until one"
        " starts."]
    assert _who_sends([], now, PLAN).splitlines()[1].endswith("until `eventcron run` starts.")
    other_plan = _who_sends([alive], now, "9" * 64)
    assert "runs another version of the schedule file (plan 3f2a9c1e, this file 99999999)" \
        in other_plan


def test_an_instance_as_json() -> None:
    assert _instance_json(instance(seen=T0 + 5_000), T0 + 6_000) == {
        "name": OWNER, "host": "box", "pid": 4242, "version": "0.1.0",
        "started_at": "2026-09-21T14:13:20Z", "last_seen": "2026-09-21T14:13:25Z",
        "stopped_at": None, "alive": True, "paused": False, "plan_sha256": PLAN}


# --- the command, in-process on a real SQLite file ------------------------------------------


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{path}")
    try:
        ledger.record_skipped("b", "UTC", [T0], "catch_up_mode is none", T0, instance=OWNER)
        ledger.begin_fire("a", "UTC", T0 - 60_000, T0, instance=OWNER)
        ledger.finish_fire("a", "UTC", T0 - 60_000, 0, T0, instance=OWNER)
    finally:
        ledger.close()
    return path


def test_history_with_only_a_database(ledger_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no schedule file here
    assert main(["--database", str(ledger_file), "history", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(e["schedule"], e["outcome"], e["instance"]) for e in found] == [
        ("b", "skipped", OWNER), ("a", "fired", OWNER)]
    assert main(["--database", str(ledger_file), "history", "--limit", "1"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 2 and "b@UTC" in shown.out
    assert "(the newest 1; --limit 0 shows all" in shown.err
    assert main(["--database", str(ledger_file), "history", "--schedule", "bb"]) == 0
    assert capsys.readouterr().out == "No occurrences of bb recorded (did you mean 'b'?).\n"


@pytest.mark.parametrize(("argv", "says"), [
    (["--since", "yesterday"], "'yesterday' is not a time --since accepts; give a duration"
                               " ago such as 2h or 3d, or an RFC 3339 time"),
    (["--since", "2026-12-01T09:00:00"], "has no UTC offset; add Z"),
    (["--since", "9999999999d"], "reaches back past year 1"),
    (["--limit", "-1"], "'-1' must not be negative"),
    (["--limit", "many"], "'many' is not a whole number"),
])
def test_bad_options_are_a_sentence_and_exit_2(ledger_file: Path, argv: list[str], says: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database", str(ledger_file), "history", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_since_takes_a_duration_or_a_time(ledger_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database", str(ledger_file), "history", "--since", "2026-09-21T14:13:00Z",
                 "--json"]) == 0
    assert [e["schedule"] for e in json.loads(capsys.readouterr().out)] == ["b"]
    assert main(["--database", str(ledger_file), "history", "--since", "1h"]) == 0
    assert capsys.readouterr().out.startswith("No occurrences recorded since ")
