"""The campaign rules' decisions (eventcron.campaign), on configs built as objects.

The file keys of these rules are read elsewhere; here each config is made directly from
the model, so the tests say exactly which rule they set.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from eventcron.campaign import OPTED_OUT, CapWindow, Rules, Verdict, warnings
from eventcron.config import Config, Delivery, Endpoint, Schedule
from eventcron.config.audience import Audience, Member
from eventcron.config.model import Cap, QuietHours, Skip, Suppression
from eventcron.config.template import DataTemplate
from eventcron.timing import CronExpr, jitter_delay
from eventcron.timing.holidays import holiday

PATH = Path("/etc/eventcron/schedules.yaml")
NIGHT = QuietHours(time(21), time(8))
HOUR = 3600.0


def utc(year: int, month: int, day: int, *clock: int) -> datetime:
    """Return an aware UTC datetime; ``clock`` is hour, minute and second, as far as given."""
    hour, minute, second = (*clock, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def member(uid: str, zone: str | None = None, *fields: str) -> Member:
    """Return an audience member."""
    return Member(uid, zone, tuple(fields))


def schedule(*members: Member, sid: str = "checkin", zone: str = "Europe/Berlin",
             columns: tuple[str, ...] = (), **rules: Any) -> Schedule:
    """Return a daily 09:00 schedule for inline ``members`` with campaign ``rules`` set."""
    audience = Audience(None, columns, frozenset(m.timezone for m in members), len(members),
                        members=tuple(members))
    made = Schedule(sid, "reminder", "cron", zone, audience, DataTemplate.compile({}),
                    cron=CronExpr.parse("0 9 * * *"), line=7)
    return dataclasses.replace(made, **rules)


def config(*schedules: Schedule, optouts: frozenset[str] | None = None,
           per_user: Cap | None = None, expires_after: float = 6 * HOUR) -> Config:
    """Return a config of ``schedules`` with the config-wide rules given."""
    suppress = None if optouts is None else Suppression(PATH.with_name("optouts.csv"), optouts)
    return Config(PATH, "sqlite://", Endpoint(), Delivery(expires_after=expires_after),
                  {}, tuple(schedules), suppress=suppress, per_user=per_user)


def named(region: str, day: date) -> str:
    """Return the holiday's name as the calendars give it (Christmas Day, Victory Day, ...).

    The ``holidays`` package names holidays in the language of the process's locale
    (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), so the tests take the name from it.
    """
    name = holiday(region, day)
    assert name is not None, (region, day)
    return name


def judge_one(rules: Rules, s: Schedule, nominal: datetime, m: Member, *,
              expires_after: float = 6 * HOUR, zone: str | None = None) -> Verdict:
    """Judge one member of the occurrence of (``s``, ``zone``) at ``nominal``."""
    job_zone = zone or s.zone_of(m)
    return rules.judge(s, job_zone, nominal, nominal + timedelta(seconds=expires_after))(m)


# -- active, zones, opt-outs ------------------------------------------------------------


def test_a_plain_file_has_no_active_rules() -> None:
    """No window, skip, cap or opt-out: firing takes its fast path and never asks."""
    plain = schedule(member("u1"))
    assert not Rules(config(plain)).active
    assert not Rules(config(plain, optouts=frozenset())).active
    # A cap only exempt schedules would meet applies to nothing.
    assert not Rules(config(dataclasses.replace(plain, exempt=True),
                            per_user=Cap(1, "day"))).active
    assert Rules(config(plain, per_user=Cap(1, "day"))).active
    assert Rules(config(plain, optouts=frozenset({"u9"}))).active
    assert Rules(config(dataclasses.replace(plain, quiet_hours=NIGHT))).active
    assert Rules(config(dataclasses.replace(plain, skip=Skip(holidays="DE")))).active


def test_the_recipient_zone_is_the_users_own_else_the_schedules() -> None:
    """A user's own timezone decides; without one, the schedule's (or UTC for `user`)."""
    rules = Rules(config())
    fixed = schedule(zone="Europe/Berlin")
    per_user = schedule(zone="user")
    assert rules.recipient_zone(fixed, member("a", "America/New_York")) == "America/New_York"
    assert rules.recipient_zone(fixed, member("b")) == "Europe/Berlin"
    assert rules.recipient_zone(per_user, member("a", "Asia/Tokyo")) == "Asia/Tokyo"
    assert rules.recipient_zone(per_user, member("b")) == "UTC"


def test_an_opt_out_wins_over_every_other_rule() -> None:
    """An opted-out user is suppressed "opted out", on a skip date, held past expiry or not."""
    s = schedule(member("out"), member("in"), quiet_hours=NIGHT,
                 skip=Skip(dates=frozenset({date(2026, 12, 24)})))
    rules = Rules(config(s, optouts=frozenset({"out"}), per_user=Cap(1, "day")))
    assert rules.opted_out("out") and not rules.opted_out("in")
    for nominal in (utc(2026, 12, 24, 12), utc(2026, 12, 7, 20, 30), utc(2026, 12, 7, 12)):
        verdict = judge_one(rules, s, nominal, member("out"))
        assert (verdict.status, verdict.reason, verdict.cap) == ("suppressed", OPTED_OUT, None)
    assert judge_one(rules, s, utc(2026, 12, 24, 12), member("in")).reason == (
        "skip date 2026-12-24")
    assert judge_one(rules, s, utc(2026, 12, 7, 20, 30), member("in")).status == "expired"
    assert judge_one(rules, s, utc(2026, 12, 7, 12), member("in")).status == "pending"


# -- quiet hours ------------------------------------------------------------------------


def test_quiet_hours_across_midnight_hold_each_user_in_their_zone() -> None:
    """21:00-08:00 local: Berlin's user waits for 08:00 Berlin, New York's for 08:00 there."""
    berlin, new_york = member("b"), member("n", "America/New_York")
    s = schedule(berlin, new_york, quiet_hours=NIGHT)
    rules = Rules(config(s))
    evening = utc(2026, 12, 7, 21, 30)  # Berlin 22:30 (quiet), New York 16:30
    judge = rules.judge(s, "Europe/Berlin", evening, evening + timedelta(hours=12))
    assert judge(berlin) == Verdict("Europe/Berlin", utc(2026, 12, 8, 7), "pending", None, None)
    assert judge(new_york) == Verdict("America/New_York", evening, "pending", None, None)
    night = utc(2026, 12, 8, 3)  # Berlin 04:00, New York 22:00: both quiet
    judge = rules.judge(s, "Europe/Berlin", night, night + timedelta(hours=12))
    assert judge(berlin).send_at == utc(2026, 12, 8, 7)
    assert judge(new_york).send_at == utc(2026, 12, 8, 13)
    assert rules.quiet_until("checkin", "America/New_York", night) == utc(2026, 12, 8, 13)
    assert rules.quiet_until("checkin", None, night) == utc(2026, 12, 8, 7)


def test_quiet_hours_end_at_08_00_local_across_dst_changes() -> None:
    """Berlin's nights of 2026-03-29 (10 h) and 2026-10-25 (12 h) end at 08:00 local."""
    s = schedule(member("b"), quiet_hours=NIGHT)
    rules = Rules(config(s, expires_after=24 * HOUR))
    spring = judge_one(rules, s, utc(2026, 3, 28, 22), member("b"), expires_after=24 * HOUR)
    assert spring.send_at == utc(2026, 3, 29, 6)
    autumn = judge_one(rules, s, utc(2026, 10, 24, 21), member("b"), expires_after=24 * HOUR)
    assert autumn.send_at == utc(2026, 10, 25, 7)


def test_held_past_the_expiry_the_row_expires_with_the_reason() -> None:
    """Due at 21:30 Berlin with expires_after 6h: 08:00 is past it, so the row expires."""
    s = schedule(member("b"), quiet_hours=NIGHT)
    rules = Rules(config(s, per_user=Cap(1, "day")))
    verdict = judge_one(rules, s, utc(2026, 12, 7, 20, 30), member("b"))
    assert verdict == Verdict(
        "Europe/Berlin", utc(2026, 12, 8, 7), "expired",
        "quiet hours 21:00-08:00 (Europe/Berlin) last past its expiry"
        " (delivery.expires_after)", None)
    # An end exactly at the expiry expires too; a second earlier is still pending.
    exact = judge_one(rules, s, utc(2026, 12, 8, 1), member("b"))
    assert exact.status == "expired"
    assert judge_one(rules, s, utc(2026, 12, 8, 1, 0, 1), member("b")).status == "pending"


def test_jitter_moves_some_users_into_the_window() -> None:
    """Due 20:30 Berlin with 1 h jitter: who lands after 21:00 waits for 08:00; the rest
    are sent at nominal plus their jitter, exactly as firing computes it."""
    users = [member(f"u{i}") for i in range(200)]
    s = schedule(*users, quiet_hours=NIGHT, jitter=HOUR)
    rules = Rules(config(s, expires_after=24 * HOUR))
    nominal = utc(2026, 12, 7, 19, 30)
    judge = rules.judge(s, "Europe/Berlin", nominal, nominal + timedelta(days=1))
    held = 0
    for m in users:
        planned = nominal + jitter_delay("checkin", m.id, nominal, timedelta(hours=1))
        if planned >= utc(2026, 12, 7, 20):
            held += 1
            assert judge(m).send_at == utc(2026, 12, 8, 7)
        else:
            assert judge(m).send_at == planned
        # What was worked out once per zone gives each user what a fresh judge would.
        assert judge(m) == judge_one(rules, s, nominal, m, expires_after=24 * HOUR)
    assert 50 < held < 150


def test_quiet_until_answers_only_for_a_known_schedule_with_a_window() -> None:
    """Outside the window, without one, or for a schedule not in the plan: None."""
    quiet = schedule(member("b"), quiet_hours=NIGHT)
    plain = schedule(member("b"), sid="plain")
    rules = Rules(config(quiet, plain))
    assert rules.quiet_until("checkin", "Europe/Berlin", utc(2026, 12, 7, 12)) is None
    assert rules.quiet_until("plain", "Europe/Berlin", utc(2026, 12, 7, 23)) is None
    assert rules.quiet_until("gone", "Europe/Berlin", utc(2026, 12, 7, 23)) is None
    assert rules.quiet_hours("checkin") == NIGHT and rules.quiet_hours("gone") is None


# -- skip dates and holidays ------------------------------------------------------------


def test_a_holiday_in_the_users_country_column_suppresses_only_their_row() -> None:
    """2026-05-08 is Victory Day in France, no holiday in Germany (holidays package)."""
    de, fr, none, bad = (member("de", None, "DE"), member("fr", None, "FR"),
                         member("none", None, ""), member("bad", None, "XX"))
    s = schedule(de, fr, none, bad, columns=("country",),
                 skip=Skip(holidays_column="country"))
    rules = Rules(config(s))
    nominal = utc(2026, 5, 8, 7)
    assert rules.occurrence_skip(s, "Europe/Berlin", nominal) is None  # decided per user
    judge = rules.judge(s, "Europe/Berlin", nominal, nominal + timedelta(hours=6))
    assert judge(fr) == Verdict("Europe/Berlin", nominal, "suppressed",
                                f"holiday: {named('FR', date(2026, 5, 8))} (FR)", None)
    assert judge(de).status == judge(none).status == judge(bad).status == "pending"
    christmas = utc(2026, 12, 25, 8)
    judge = rules.judge(s, "Europe/Berlin", christmas, christmas + timedelta(hours=6))
    assert judge(de).reason == f"holiday: {named('DE', date(2026, 12, 25))} (DE)"
    assert judge(fr).reason == f"holiday: {named('FR', date(2026, 12, 25))} (FR)"
    assert rules.occurrence_skip(s, "Europe/Berlin", christmas) is None


def test_a_fixed_region_holiday_skips_the_occurrence_for_everyone() -> None:
    """Christmas Day in DE-BY, and Epiphany, which only Bavaria keeps of the two."""
    s = schedule(member("a"), member("b", "Europe/Vienna"), skip=Skip(holidays="DE-BY"))
    rules = Rules(config(s))
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 25, 8)) == (
        f"holiday: {named('DE-BY', date(2026, 12, 25))} (DE-BY)")
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 1, 6, 8)) == (
        f"holiday: {named('DE-BY', date(2026, 1, 6))} (DE-BY)")
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 1, 7, 8)) is None


def test_skip_dates_and_ranges_are_local_dates() -> None:
    """A range 2026-12-31..2027-01-01 skips both days, in the recipient's local date."""
    days = frozenset({date(2026, 12, 24), date(2026, 12, 31), date(2027, 1, 1)})
    s = schedule(member("a"), skip=Skip(dates=days))
    rules = Rules(config(s))
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 31, 8)) == (
        "skip date 2026-12-31")
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2027, 1, 1, 8)) == (
        "skip date 2027-01-01")
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2027, 1, 2, 8)) is None
    # 23:30 UTC on 12-30 is already 12-31 in Berlin.
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 30, 23, 30)) == (
        "skip date 2026-12-31")


def test_a_skip_applies_to_everyone_only_when_every_zone_agrees() -> None:
    """Fixed-zone schedule, users in Berlin and Los Angeles: 06:00 UTC on 12-24 is 12-24 in
    Berlin but 12-23 in LA, so rows say it one by one; 18:00 UTC is 12-24 in both."""
    berlin, la, plain = member("b"), member("l", "America/Los_Angeles"), member("p")
    s = schedule(berlin, la, plain, skip=Skip(dates=frozenset({date(2026, 12, 24)})))
    rules = Rules(config(s))
    morning = utc(2026, 12, 24, 6)
    assert rules.occurrence_skip(s, "Europe/Berlin", morning) is None
    judge = rules.judge(s, "Europe/Berlin", morning, morning + timedelta(hours=6))
    assert judge(berlin) == Verdict("Europe/Berlin", morning, "suppressed",
                                    "skip date 2026-12-24", None)
    assert judge(plain).status == "suppressed"  # no zone of their own: the schedule's
    assert judge(la) == Verdict("America/Los_Angeles", morning, "pending", None, None)
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 24, 18)) == (
        "skip date 2026-12-24")
    # timezone: user: each job is one zone, which alone decides.
    per_user = dataclasses.replace(s, timezone="user")
    assert rules.occurrence_skip(per_user, "Europe/Berlin", morning) == "skip date 2026-12-24"
    assert rules.occurrence_skip(per_user, "America/Los_Angeles", morning) is None


def test_different_skip_reasons_in_two_zones_are_decided_per_user() -> None:
    """12-24 in LA and 12-25 in Berlin are both skipped, but not for the same reason."""
    days = frozenset({date(2026, 12, 24), date(2026, 12, 25)})
    s = schedule(member("b"), member("l", "America/Los_Angeles"), skip=Skip(dates=days))
    rules = Rules(config(s))
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 25, 5)) is None


def test_a_skip_date_applies_to_everyone_even_with_a_user_column() -> None:
    """The date does not depend on the column: the whole occurrence is skipped."""
    s = schedule(member("a", None, "FR"), columns=("country",),
                 skip=Skip(dates=frozenset({date(2026, 12, 24)}), holidays_column="country"))
    rules = Rules(config(s))
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 12, 24, 8)) == (
        "skip date 2026-12-24")
    assert rules.occurrence_skip(s, "Europe/Berlin", utc(2026, 5, 8, 8)) is None


# -- caps -------------------------------------------------------------------------------


def test_the_cap_window_is_the_local_day_of_the_send_time_after_quiet_hours() -> None:
    """Due 23:30 on 12-07 Berlin, held to 08:00 on 12-08: it counts on 12-08."""
    berlin, new_york = member("b", "Europe/Berlin"), member("n", "America/New_York")
    s = schedule(berlin, new_york, quiet_hours=NIGHT)
    rules = Rules(config(s, per_user=Cap(2, "day"), expires_after=12 * HOUR))
    nominal = utc(2026, 12, 7, 22, 30)
    judge = rules.judge(s, "Europe/Berlin", nominal, nominal + timedelta(hours=12))
    assert judge(berlin).cap == CapWindow("2/day", 2, utc(2026, 12, 7, 23),
                                               utc(2026, 12, 8, 23),
                                               "2026-12-08 (Europe/Berlin)")
    assert judge(new_york).cap == CapWindow("2/day", 2, utc(2026, 12, 7, 5),
                                               utc(2026, 12, 8, 5),
                                               "2026-12-07 (America/New_York)")


def test_a_user_without_a_zone_has_one_cap_day_across_schedules_in_two_zones() -> None:
    """Berlin 10:00 and New York 04:00 are one instant: one UTC day, one window."""
    someone = member("u")
    berlin = schedule(someone, sid="a")
    new_york = schedule(someone, sid="b", zone="America/New_York")
    rules = Rules(config(berlin, new_york, per_user=Cap(1, "day")))
    at = utc(2026, 12, 7, 9)
    a = judge_one(rules, berlin, at, someone).cap
    b = judge_one(rules, new_york, at, someone).cap
    assert a == b == CapWindow("1/day", 1, utc(2026, 12, 7), utc(2026, 12, 8), "2026-12-07 (UTC)")


def test_the_cap_day_of_a_dst_change_is_23_hours() -> None:
    """Berlin, 2026-03-29: the day runs from 23:00 UTC to 22:00 UTC."""
    s = schedule(member("b", "Europe/Berlin"))
    rules = Rules(config(s, per_user=Cap(1, "day")))
    cap = judge_one(rules, s, utc(2026, 3, 29, 12), member("b", "Europe/Berlin")).cap
    assert cap is not None
    assert (cap.start, cap.end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))


def test_exempt_schedules_and_final_rows_take_no_cap_window() -> None:
    """Exempt: neither counted nor capped. Suppressed and expired rows count nowhere."""
    exempt = schedule(member("b"), sid="otp", exempt=True)
    capped = schedule(member("b"), member("out"), quiet_hours=NIGHT,
                      skip=Skip(dates=frozenset({date(2026, 12, 24)})))
    rules = Rules(config(exempt, capped, per_user=Cap(3, "week"), optouts=frozenset({"out"})))
    noon = utc(2026, 12, 9, 12)
    assert judge_one(rules, exempt, noon, member("b")).cap is None
    cap = judge_one(rules, capped, noon, member("b")).cap
    # b has no zone of their own: capped in UTC, whichever schedule's zone serves them.
    assert cap is not None and cap.label == "the week of 2026-12-07 (UTC)"
    assert judge_one(rules, capped, noon, member("out")).cap is None
    assert judge_one(rules, capped, utc(2026, 12, 24, 12), member("b")).cap is None
    assert judge_one(rules, capped, utc(2026, 12, 9, 20, 30), member("b")).cap is None


def test_users_alike_share_one_verdict_and_still_differ_by_zone() -> None:
    """Without jitter or a user column each zone's verdict is worked out once."""
    users = [member(f"u{i}", "America/New_York" if i % 2 else None) for i in range(6)]
    s = schedule(*users, quiet_hours=NIGHT)
    rules = Rules(config(s, per_user=Cap(1, "h"), optouts=frozenset({"u2"})))
    nominal = utc(2026, 12, 7, 22, 30)
    judge = rules.judge(s, "Europe/Berlin", nominal, nominal + timedelta(hours=12))
    verdicts = [judge(m) for m in users]
    assert verdicts[0] is verdicts[4]
    assert verdicts[1] is verdicts[3] is verdicts[5]
    assert verdicts[2].reason == OPTED_OUT
    assert verdicts[0].send_at == utc(2026, 12, 8, 7)
    assert verdicts[1].send_at == nominal
    assert verdicts[1].cap is not None
    assert verdicts[1].cap.label == "2026-12-07 17:00-18:00 (America/New_York)"


# -- warnings ---------------------------------------------------------------------------


def test_a_quiet_window_longer_than_the_expiry_is_warned_about() -> None:
    """11 h of quiet against 6 h of expiry: events due at 21:00 would expire, say so."""
    long = schedule(member("a"), quiet_hours=NIGHT)
    short = schedule(member("a"), sid="short", quiet_hours=QuietHours(time(23), time(3)))
    none = schedule(member("a"), sid="none")
    assert warnings(config(long, short, none)) == [
        "/etc/eventcron/schedules.yaml:7: warning: schedule 'checkin': its quiet hours"
        " (21:00-08:00, 11h) last longer than delivery.expires_after (6h): events due when"
        " they begin would expire instead of waiting; raise expires_after or shorten the"
        " window."]
    assert warnings(config(long, expires_after=12 * HOUR)) == []
