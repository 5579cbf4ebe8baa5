"""The campaign rules against a running daemon and the sink: quiet hours, holidays, caps, opt-outs.

Every test runs ``eventcron run`` and ``eventcron sink`` as processes (real HTTP over
loopback) and checks what reached the sink, and what the ledger and the commands an operator
runs say about what did not. A check that something never arrived is only made once
something that could have arrived with it did (another user's event of the same occurrence),
or while the held row is visibly pending with its next attempt far ahead.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest

from eventcron.ledger import Filters, Ledger, LedgerError, Row
from eventcron.timing.holidays import check_region, holiday
from tests.acceptance.conftest import Run
from tests.acceptance.processes import (
    Proc,
    SinkProcess,
    at_time,
    fire_when_due,
    is_ready,
    rfc3339,
    start,
    start_sink,
    wait_for,
    write_config,
)
from tests.pg import postgres_url, reset_postgres

SECOND = timedelta(seconds=1)


def campaign_config(folder: Path, url: str, schedules: str, *, audiences: str = "",
                    delivery: str = "", top: str = "") -> Path:
    """Write the acceptance schedule file with extra ``delivery`` and top-level keys."""
    path = write_config(folder, url, schedules, audiences=audiences)
    text = path.read_text().replace("delivery:\n", "delivery:\n" + delivery, 1)
    path.write_text(text.replace("\nschedules:\n", "\n" + top + "schedules:\n", 1))
    return path


def etc_zone(offset: int) -> str:
    """Return the fixed zone ``offset`` hours east of UTC.

    The Etc/GMT names have POSIX signs, inverted: Etc/GMT-3 is three hours AHEAD of UTC.
    """
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def offset_at_hour(hour: int, now: datetime) -> int:
    """Return a whole-hour UTC offset (-9..+14, all Etc/GMT zones) whose local hour is ``hour``."""
    offset = (hour - now.astimezone(UTC).hour) % 24
    return offset - 24 if offset > 14 else offset


def twelve_hours_off(offset: int) -> int:
    """Return the whole-hour offset twelve hours from ``offset`` that an Etc/GMT zone has."""
    return offset + 12 if offset + 12 <= 14 else offset - 12


def ledger_rows(url: str) -> list[Row]:
    """Every row of the ledger at ``url`` (none before a daemon created it)."""
    try:
        ledger = Ledger.open(url, create=False)
    except LedgerError:
        return []
    try:
        return ledger.rows(Filters())
    finally:
        ledger.close()


def all_final(url: str, rows: int) -> bool:
    """Tell whether the ledger holds ``rows`` rows and none of them is pending."""
    found = ledger_rows(url)
    return len(found) == rows and all(r.status != "pending" for r in found)


def json_of(run: Run, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run an eventcron command that prints JSON and return what it printed."""
    result = run(*args, env=env)
    assert result.returncode == 0, f"eventcron {' '.join(args)}:\n{result.stderr}"
    return json.loads(result.stdout)


def by_user(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Index ``deliveries --json`` rows of one schedule by user."""
    found = {r["app_user_id"]: r for r in rows}
    assert len(found) == len(rows), "two rows of one user in one occurrence"
    return found


def users_sent(sink: SinkProcess) -> Counter[str]:
    """How many events the sink accepted for each user."""
    return Counter(str(r["app_user_id"]) for r in sink.delivered())


def ready_then_fire(folder: Path, daemons: list[Proc], ids: list[str], at: datetime, *,
                    env: dict[str, str] | None = None) -> None:
    """Wait for the daemons, then see that ``at`` of every schedule in ``ids`` was fired."""
    wait_for(lambda: all(is_ready(d) for d in daemons), 120, "the daemons to be ready")
    for sid in ids:
        fire_when_due(folder, sid, at, env=env)


def stopped_cleanly(*daemons: Proc) -> None:
    """Stop the daemons and check that they stopped without an error."""
    for daemon in daemons:
        code = daemon.stop()
        assert code == 0, daemon.stderr()
        assert "Traceback" not in daemon.stderr()


# --- quiet hours -------------------------------------------------------------------------


def test_quiet_hours_crossing_midnight_hold_one_zone_and_not_the_other(
        run: Run, tmp_path: Path) -> None:
    # Zone A is at 23:xx now, inside 22:00-02:00; zone B, twelve hours off, at 11:xx.
    offset = offset_at_hour(23, datetime.now(UTC))
    zone_a = etc_zone(offset)
    zone_b = etc_zone(twelve_hours_off(offset))
    at = at_time(4)
    local = at.astimezone(ZoneInfo(zone_a))
    end = local.replace(hour=2, minute=0, second=0)  # the next 02:00 in A: A's next day,
    if end <= local:  # unless `at` already crossed A's midnight
        end += timedelta(days=1)
    sink = start_sink(tmp_path)
    campaign_config(tmp_path, sink.url, f"""\
  - id: nightly
    event_type: "reminder:night"
    at: "{rfc3339(at)}"
    users: [{{id: u_a, timezone: {zone_a}}}, {{id: u_b, timezone: {zone_b}}}]
""", delivery='  expires_after: 12h\n  quiet_hours: {from: "22:00", to: "02:00"}\n')
    daemon = start(["run"], tmp_path, "run")
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    try:
        ready_then_fire(tmp_path, [daemon], ["nightly"], at)
        wait_for(lambda: "u_b" in users_sent(sink), 60, "u_b's event (11:xx local)")
        # The sink answers before the daemon records the answer: wait for the record.
        wait_for(lambda: any(r.app_user_id == "u_b" and r.status == "delivered"
                             for r in ledger_rows(url)), 30, "the ledger to record u_b's")
        rows = by_user(json_of(run, "deliveries", "--json", "--limit", "0"))
        assert users_sent(sink) == Counter({"u_b": 1}), "u_a's event was sent in the night"
    finally:
        stopped_cleanly(daemon)
        sink.proc.stop()
    held = rows["u_a"]
    assert (held["status"], held["attempts"], held["next_attempt_at"]) == (
        "pending", 0, rfc3339(end)), f"{zone_a} at {local:%H:%M}: {held}"
    assert rows["u_b"]["status"] == "delivered"
    after = rfc3339(at - SECOND)
    preview = json_of(run, "next", "--user", "u_a", "--json", "--after", after)
    assert [(p["utc"], p["send_at"], p["skipped"]) for p in preview] == [
        (rfc3339(at), rfc3339(end), None)]
    preview = json_of(run, "next", "--user", "u_b", "--json", "--after", after)
    assert [(p["utc"], p["send_at"]) for p in preview] == [(rfc3339(at), rfc3339(at))]


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_quiet_hours_end_and_the_held_event_is_sent(run: Run, tmp_path: Path) -> None:
    offset = offset_at_hour(23, datetime.now(UTC))
    zone, other = etc_zone(offset), etc_zone(twelve_hours_off(offset))
    at = at_time(4)
    # The window ends at the next whole minute + 1 of the zone's wall time: 1-2 min ahead.
    end = at.astimezone(ZoneInfo(zone)).replace(second=0) + timedelta(minutes=2)
    begin = end - timedelta(hours=3)
    sink = start_sink(tmp_path)
    campaign_config(tmp_path, sink.url, f"""\
  - id: soon
    event_type: "reminder:soon"
    at: "{rfc3339(at)}"
    users: [{{id: u_a, timezone: {zone}}}, {{id: u_b, timezone: {other}}}]
    quiet_hours: {{from: "{begin:%H:%M}", to: "{end:%H:%M}"}}
""", delivery="  expires_after: 12h\n")
    daemon = start(["run"], tmp_path, "run")
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    try:
        ready_then_fire(tmp_path, [daemon], ["soon"], at)
        wait_for(lambda: len(ledger_rows(url)) == 2, 60, "the occurrence's rows")
        rows = {r.app_user_id: r for r in ledger_rows(url)}
        held, free = rows["u_a"], rows["u_b"]
        assert (held.status, held.attempts, held.next_attempt_at) == (
            "pending", 0, round(end.timestamp() * 1000)), held
        # u_b, twelve hours off, is outside the window: due at once (or sent already).
        assert free.status == "delivered" or free.next_attempt_at == round(
            at.timestamp() * 1000), free
        wait_for(lambda: "u_a" in users_sent(sink), 300, "u_a's event after the window")
        wait_for(lambda: all(r.status == "delivered" for r in ledger_rows(url)), 30,
                 "the ledger to record the delivery")
    finally:
        stopped_cleanly(daemon)
        sink.proc.stop()
    (received,) = [r for r in sink.delivered() if r["app_user_id"] == "u_a"]
    assert received["received_at"] >= end.timestamp()
    row = by_user(json_of(run, "deliveries", "--json", "--limit", "0"))["u_a"]
    assert row["attempts"] == 1
    assert row["delivered_at"] >= rfc3339(end)
    assert users_sent(sink) == Counter({"u_a": 1, "u_b": 1})


# --- skip dates and holidays ---------------------------------------------------------------


def find_holiday(at: datetime) -> tuple[str, date, str, str, str]:
    """Find a zone, its date at ``at``, a region with a public holiday that day and one without.

    UTC first, then the other whole-hour zones (their dates differ by one): some region of
    the ``holidays`` calendars has a holiday on all but a few days a year.
    """
    supported = holidays.list_supported_countries()
    countries = sorted(c for c in supported if len(c) == 2)
    regions = [*countries, *(f"{c}-{s}" for c in countries for s in supported[c])]
    tried: list[date] = []
    for offset in sorted(range(-9, 15), key=abs):
        zone = etc_zone(offset)
        day = at.astimezone(ZoneInfo(zone)).date()
        if day in tried:
            continue
        tried.append(day)
        plain = next((c for c in countries if holiday(c, day) is None), None)
        if plain is None:
            continue
        for region in regions:
            if check_region(region) is None and (name := holiday(region, day)) is not None:
                return zone, day, region, name, plain
    pytest.fail(f"no region of the holidays calendars has a public holiday on"
                f" {', '.join(map(str, tried))} (or every country has one): this test needs"
                " one of each, in some whole-hour zone's date of now")


def test_holiday_in_a_user_country_column_and_a_skip_date(run: Run, tmp_path: Path) -> None:
    at = at_time(4)
    zone, day, region, name, plain = find_holiday(at)
    print(f"\n{day} in {zone}: {name} in {region}, no holiday in {plain}")
    today = datetime.now(UTC).date()
    (tmp_path / "people.csv").write_text(
        "app_user_id,timezone,country\n"
        f"h_user,{zone},{region}\np_user,{zone},{plain}\nn_user,{zone},\n")
    # `dated` skips every day of the test (it may cross midnight): each of its occurrences
    # is skipped for everyone, while `pulse`, due at the same instants, is sent.
    sink = start_sink(tmp_path)
    campaign_config(tmp_path, sink.url, f"""\
  - id: greet
    event_type: "greet:hello"
    at: "{rfc3339(at)}"
    audience: people
    skip: {{holidays: user.country}}
  - {{id: pulse, event_type: "pulse:tick", every: 3s, users: [d_user]}}
  - id: dated
    event_type: "dated:tick"
    every: 3s
    users: [d_user]
    skip: {{dates: ["{today - timedelta(days=1)}..{today + timedelta(days=1)}"]}}
""", audiences="  people: {file: people.csv}\n")
    daemon = start(["run"], tmp_path, "run")
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"

    def skipped_while_pulse_sent() -> set[str]:
        """Occurrences `dated` skipped for which `pulse`'s event of the same instant was sent."""
        history = json_of(run, "history", "--json", "--limit", "0", "--schedule", "dated")
        skipped = {h["occurrence"] for h in history if h["outcome"] == "skipped"
                   and h["reason"].startswith("skip date ")}
        keys = {r["idempotency_key"] for r in sink.delivered()}
        return {rfc3339(datetime.fromtimestamp(r.scheduled_for / 1000, UTC))
                for r in ledger_rows(url)
                if r.schedule_id == "pulse" and r.event_id in keys} & skipped

    try:
        ready_then_fire(tmp_path, [daemon], ["greet"], at)
        wait_for(lambda: {"p_user", "n_user"} <= set(users_sent(sink)), 60,
                 "the events of the users without a holiday")
        wait_for(lambda: bool(skipped_while_pulse_sent()), 60,
                 "an instant `pulse` was sent and `dated` skipped")
        suppressed = json_of(run, "deliveries", "--json", "--status", "suppressed")
        history = json_of(run, "history", "--json", "--limit", "0", "--schedule", "dated")
    finally:
        stopped_cleanly(daemon)
        sink.proc.stop()
    assert [(r["app_user_id"], r["last_error"], r["attempts"]) for r in suppressed] == [
        ("h_user", f"holiday: {name} ({region})", 0)], f"{region} on {day} in {zone}"
    sent = users_sent(sink)
    assert "h_user" not in sent
    assert sent["p_user"] == sent["n_user"] == 1
    assert not [r for r in sink.delivered() if r["event_type"] == "dated:tick"]
    assert not [r for r in ledger_rows(url) if r.schedule_id == "dated"]
    assert not [h for h in history if h["outcome"] != "skipped"]
    for h in history:
        if h["reason"].startswith("skip date "):  # else: passed before the daemon loaded it
            assert h["reason"] == f"skip date {h['occurrence'][:10]}", h
            assert h["rows"] == 0


# --- frequency caps ------------------------------------------------------------------------

CAPPED = """\
  - {{id: first, event_type: "promo:first", at: "{at}", audience: members}}
  - {{id: second, event_type: "promo:second", at: "{at}", audience: members}}
  - {{id: billing, event_type: "billing:notice", at: "{at}", audience: members,
      limits: exempt}}
"""


def capped_campaign(folder: Path, url: str, users: int, at: datetime) -> None:
    """Two capped schedules and an exempt one, due at ``at`` for the same users."""
    (folder / "members.csv").write_text(
        "app_user_id\n" + "".join(f"c{i:04d}\n" for i in range(users)))
    config = campaign_config(folder, url, CAPPED.format(at=rfc3339(at)),
                             audiences="  members: {file: members.csv}\n",
                             top="limits:\n  per_user: 1/day\n")
    config.write_text(config.read_text().replace("concurrency: 32", "concurrency: 8"))


def check_capped(rows: list[Row], sink: SinkProcess, users: int, at: datetime) -> None:
    """One capped event per user reached the sink, the other was suppressed naming it."""
    got: dict[str, Counter[str]] = defaultdict(Counter)
    for r in sink.delivered():
        got[r["app_user_id"]][r["event_type"]] += 1
    assert len(got) == users
    for user, kinds in got.items():
        assert kinds["billing:notice"] == 1, (user, kinds)
        assert kinds["promo:first"] + kinds["promo:second"] == 1, (user, kinds)
    per_user: dict[str, dict[str, Row]] = defaultdict(dict)
    for row in rows:
        per_user[row.app_user_id][row.schedule_id] = row
    assert len(per_user) == users
    label = f"{at.astimezone(UTC).date()} (UTC)"
    for user, mine in per_user.items():
        assert mine["billing"].status == "delivered"
        states = {mine["first"].status, mine["second"].status}
        assert states == {"delivered", "suppressed"}, (user, states)
        sent, held = sorted((mine["first"], mine["second"]),
                            key=lambda r: r.status != "delivered")
        assert held.attempts == 0
        # Names the cap, its window and the row holding the slot ("already sent" in the
        # design, "filled by" in the ledger as of this writing: the wording is not tested).
        why = held.last_error or ""
        assert why.startswith(f"per-user cap 1/day reached for {label}: "), held
        assert why.endswith(f" {sent.schedule_id} of {rfc3339(at)}"), held


def test_two_schedules_due_together_under_one_per_day_send_one(
        run: Run, tmp_path: Path) -> None:
    users = 20
    at = at_time(4)
    sink = start_sink(tmp_path)
    capped_campaign(tmp_path, sink.url, users, at)
    daemon = start(["run"], tmp_path, "run")
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    try:
        ready_then_fire(tmp_path, [daemon], ["first", "second", "billing"], at)
        wait_for(lambda: len(sink.delivered()) >= 2 * users, 60, "two events per user")
        wait_for(lambda: all_final(url, 3 * users), 30, "the ledger to record every answer")
    finally:
        stopped_cleanly(daemon)
        sink.proc.stop()
    check_capped(ledger_rows(url), sink, users, at)
    listed = json_of(run, "deliveries", "--json", "--status", "suppressed", "--limit", "0")
    assert len(listed) == users
    assert all(r["last_error"].startswith("per-user cap 1/day reached for ") for r in listed)
    state = json_of(run, "status", "--json")
    assert state["counts"]["suppressed"] == users
    per_schedule = {s["id"]: s["counts"] for s in state["schedules"]}
    assert per_schedule["billing"]["suppressed"] == 0
    assert per_schedule["first"]["suppressed"] + per_schedule["second"]["suppressed"] == users
    (ledger_line,) = [x for x in run("status").stdout.splitlines() if x.startswith("Ledger:")]
    assert f"{users} suppressed" in ledger_line
    dry = run("replay", "--dry-run")
    assert dry.stdout.strip() == (
        "0 failed or expired events would be replayed (dry run; nothing changed).")
    dry = run("replay", "--dry-run", "--include-suppressed")
    assert dry.stdout.strip() == (f"{users} failed, expired or suppressed events would be"
                                  " replayed (dry run; nothing changed).")


ENQUEUED = re.compile(r"fired (?:first|second)@UTC at \S+: ([\d,]+) users? enqueued")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_three_instances_on_postgresql_keep_the_cap(run: Run, tmp_path: Path) -> None:
    url = postgres_url()
    reset_postgres(url)
    env = {"EVENTCRON_DATABASE_URL": url}
    # Enough users that the instances' fires of one instant overlap (each takes a while),
    # and time for three to start on a loaded machine, so that they race rather than one
    # `eventcron fire` enqueueing alone.
    users = 2000
    at = at_time(15)
    sink = start_sink(tmp_path)
    capped_campaign(tmp_path, sink.url, users, at)
    daemons = [start(["run"], tmp_path, f"run{i}", env=env) for i in range(3)]
    try:
        ready_then_fire(tmp_path, daemons, ["first", "second", "billing"], at, env=env)
        wait_for(lambda: len(sink.delivered()) >= 2 * users, 120, "two events per user")
        wait_for(lambda: all_final(url, 3 * users), 60, "the ledger to record every answer")
    finally:
        stopped_cleanly(*daemons)
        sink.proc.stop()
    check_capped(ledger_rows(url), sink, users, at)
    added = [sum(int(n.replace(",", "")) for n in ENQUEUED.findall(d.stderr()))
             for d in daemons]
    print(f"\n3 instances, {users} users: the rows of the capped schedules were enqueued by"
          f" the instances {added} (the rest by `eventcron fire`); {len(sink.delivered())}"
          " events accepted by the sink")
    assert json_of(run, "status", "--json", env=env)["counts"]["suppressed"] == users


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_concurrent_fires_on_postgresql_take_one_cap_slot_per_user(
        run: Run, tmp_path: Path) -> None:
    # Six `eventcron fire` processes started together, three per capped schedule, insert
    # the rows of one instant for the same users at once; then three instances send them.
    url = postgres_url()
    reset_postgres(url)
    env = {"EVENTCRON_DATABASE_URL": url}
    Ledger.open(url).close()  # `fire` adds to a ledger; it creates none
    users = 3000
    at = (datetime.now(UTC) - 10 * SECOND).replace(microsecond=0)
    sink = start_sink(tmp_path)
    capped_campaign(tmp_path, sink.url, users, at)
    fires = [start(["fire", sid, "--occurrence", rfc3339(at)], tmp_path, f"fire-{sid}{i}",
                   env=env) for i in range(3) for sid in ("first", "second", "billing")]
    codes = [f.popen.wait(120) for f in fires]
    assert codes == [0] * len(fires), "\n".join(f.stderr() for f in fires)
    added = {f.out.stem: int(m.group(1).replace(",", "")) for f in fires
             if (m := re.search(r"added ([\d,]+) new rows?", f.stdout()))}
    assert len(added) == len(fires), [f.stdout() for f in fires]
    rows = ledger_rows(url)
    assert Counter(r.status for r in rows) == Counter({"pending": 2 * users,
                                                       "suppressed": users})
    daemons = [start(["run"], tmp_path, f"run{i}", env=env) for i in range(3)]
    try:
        wait_for(lambda: len(sink.delivered()) >= 2 * users, 120, "two events per user")
        wait_for(lambda: all_final(url, 3 * users), 60, "the ledger to record every answer")
    finally:
        stopped_cleanly(*daemons)
        sink.proc.stop()
    check_capped(ledger_rows(url), sink, users, at)
    print(f"\n{users} users, rows added by each `eventcron fire`: {added}")


# --- opt-outs ------------------------------------------------------------------------------

RELOADED = re.compile(r"reloaded .*; (\d+) pending events? of opted-out users suppressed")


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_an_opt_out_added_mid_campaign_suppresses_the_pending_rows(
        run: Run, tmp_path: Path) -> None:
    users = [f"o{i:02d}" for i in range(30)]
    at = at_time(4)
    (tmp_path / "optouts.csv").write_text("app_user_id,why\no_out,asked\n")
    sink = start_sink(tmp_path)
    # A jitter of 150 s spreads the first attempts: a campaign that is still sending.
    campaign_config(tmp_path, sink.url, f"""\
  - id: spread
    event_type: "promo:spread"
    at: "{rfc3339(at)}"
    jitter: 150s
    users: [{", ".join([*users, "o_out"])}]
""", top="suppress:\n  file: optouts.csv\n")
    daemon = start(["run"], tmp_path, "run")
    url = f"sqlite:///{tmp_path / 'eventcron.db'}"
    try:
        ready_then_fire(tmp_path, [daemon], ["spread"], at)
        wait_for(lambda: len(ledger_rows(url)) == len(users) + 1, 60, "the occurrence's rows")
        wait_for(lambda: bool(sink.delivered()), 120, "the first events of the campaign")
        # Opt out every other user whose event is due 45 s or more from now (a reload
        # takes a few seconds); the others, due between them, show sending went on.
        soon = round(time.time() * 1000) + 45_000
        later = sorted((r for r in ledger_rows(url)
                        if r.status == "pending" and r.next_attempt_at >= soon),
                       key=lambda r: r.next_attempt_at)
        assert len(later) >= 2, f"too few events due after 45 s to opt out: {later}"
        victims = {r.app_user_id for r in later[0::2]}
        first_due = later[0].next_attempt_at
        with (tmp_path / "optouts.csv").open("a") as f:
            f.write("".join(f"{v},asked later\n" for v in sorted(victims)))
        wait_for(lambda: RELOADED.search(daemon.stderr()) is not None, 60,
                 "the reload of the suppression file")
        reloaded_by = time.time() * 1000
        match = RELOADED.search(daemon.stderr())
        assert match is not None and int(match.group(1)) == len(victims), daemon.stderr()
        assert reloaded_by < first_due, "the reload came after the first opt-out was due"
        wait_for(lambda: not [r for r in ledger_rows(url) if r.status == "pending"], 240,
                 "every row to end")
    finally:
        stopped_cleanly(daemon)
        sink.proc.stop()
    rows = {r.app_user_id: r for r in ledger_rows(url)}
    out = victims | {"o_out"}
    assert {u for u, r in rows.items() if r.status == "suppressed"} == out
    assert {(r.last_error, r.attempts) for u, r in rows.items() if u in out} == {
        ("opted out", 0)}
    sent = users_sent(sink)
    assert set(sent) == set(users) - victims
    assert max(sent.values()) == 1
    # Sending went on after the first opted-out user's time: the opt-out held, not luck.
    assert max(r["received_at"] for r in sink.delivered()) * 1000 >= first_due
    listed = json_of(run, "deliveries", "--json", "--status", "suppressed", "--limit", "0")
    assert {r["app_user_id"] for r in listed} == out
    victim = sorted(victims)[0]
    preview = json_of(run, "next", "--user", victim, "--json", "--after", rfc3339(at - SECOND))
    assert [p["skipped"] for p in preview] == ["opted out"]
    dry = run("replay", "--dry-run", "--include-suppressed")
    assert dry.stdout.startswith(f"{len(out)} failed, expired or suppressed events"), dry.stdout
