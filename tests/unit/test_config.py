"""The schedule file: validation with located problems, and the objects it yields."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from eventcron import cli, config
from eventcron.config.model import QuietHours
from eventcron.config.schema import schema
from eventcron.config.template import DataTemplate
from eventcron.problems import InvalidInput
from eventcron.timing import AtTiming, CronTiming, EveryTiming
from tests.unit.configs import MINIMAL, problems_of, write

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "schedules.example.yaml"
FIXTURES = ROOT / "tests" / "fixtures"


def test_the_example_file_is_valid_and_complete() -> None:
    cfg = config.load(EXAMPLE)
    assert [s.id for s in cfg.schedules] == [
        "weekday-checkin", "customer-renewal", "appointment-followup", "heartbeat"]
    assert cfg.endpoint.rate_limit == 200.0
    assert cfg.endpoint.concurrency == 32
    assert cfg.delivery == config.Delivery(10, 30.0, 3600.0, 12 * 3600.0, 3600.0, "latest",
                                           quiet_hours=QuietHours(time(21), time(8)))
    assert cfg.database == "sqlite:///" + str(ROOT / "eventcron.db")
    renewal = cfg.schedule("customer-renewal")
    assert renewal is not None
    assert renewal.zones() == ("America/New_York", "Asia/Tokyo", "Europe/Berlin", "UTC")
    assert renewal.audience.size == 4


# Keys the example can only show in a comment (they need a file of the reader's own).
COMMENTED_ONLY = {"ca_bundle"}


def test_the_example_uses_every_key_of_the_schema() -> None:
    text = EXAMPLE.read_text()
    raw = yaml.safe_load(text)
    top = schema()
    props = top["properties"]
    assert set(raw) == set(props)
    for section in ("endpoint", "delivery", "metrics"):
        assert set(raw[section]) == set(props[section]["properties"]) - COMMENTED_ONLY
    used = {k for s in raw["schedules"] for k in s}
    assert used == set(props["schedules"]["items"]["properties"])
    for key in COMMENTED_ONLY:
        assert f"# {key}: " in text


def test_the_example_validates_against_the_json_schema() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    # JSON Schema sees YAML's own typing; timestamps are written as strings in JSON.
    for s in raw["schedules"]:
        for key in ("at", "starts", "ends"):
            if key in s:
                s[key] = s[key].isoformat()
    jsonschema.validate(raw, schema())


def test_the_committed_schema_file_matches_the_code() -> None:
    import json
    committed = json.loads((ROOT / "schedules.schema.json").read_text())
    assert committed == schema()


# Every mistake in tests/fixtures/dozen-mistakes.yaml, where it is, and what is said.
DOZEN = [
    ("dozen-mistakes.yaml:3:8:", "endpoint.url must be an http:// or https:// URL"),
    ("dozen-mistakes.yaml:4:3:", "unknown key 'timout' in endpoint (did you mean 'timeout'?)"),
    ("dozen-mistakes.yaml:5:16:", "endpoint.concurrency must be a whole number"),
    ("dozen-mistakes.yaml:7:17:", "delivery.max_attempts must be a whole number from 1"),
    ("dozen-mistakes.yaml:8:20:", "'soon' is not a duration"),
    ("dozen-mistakes.yaml:9:18:", "catch_up_mode must be 'latest', 'all' or 'none', not"
                                  " 'newest'"),
    ("dozen-mistakes.yaml:12:23:", "the user 'u_1' is listed twice"),
    ("dozen-mistakes.yaml:14:11: audience 'customers': the file",
     "/no-such-file.csv does not exist."),
    ("dozen-mistakes.yaml:18:20:", "day of week 8 is out of range 0-7"),
    ("dozen-mistakes.yaml:19:15:", "unknown time zone 'Europe/Berln' (did you mean"
                                   " 'Europe/Berlin'?)"),
    ("dozen-mistakes.yaml:20:15:", "unknown audience 'frends' (did you mean 'friends'?)"),
    ("dozen-mistakes.yaml:21:9:", "the schedule id 'morning' is used twice (first on line 16)"),
    ("dozen-mistakes.yaml:23:14:", "step 0"),
    ("dozen-mistakes.yaml:27:11:", "@reboot is not supported"),
    ("dozen-mistakes.yaml:28:5:", "needs exactly one of 'cron', 'every' or 'at'; it has"
                                  " 'cron' and 'every'"),
    ("dozen-mistakes.yaml:34:11:", "data must be a mapping (a JSON object), not a list"),
    ("dozen-mistakes.yaml:40:12:", "unknown placeholder ${scheduled_fr} (did you mean"
                                   " 'scheduled_for'?)"),
    ("dozen-mistakes.yaml:41:13:", "${user.first_name} names the field 'first_name'"),
    ("dozen-mistakes.yaml:44:14:", "hour 61 is out of range 0-23"),
    ("dozen-mistakes.yaml:45:13:", "'-5s' is not a duration"),
    ("dozen-mistakes.yaml:46:5:", "unknown key 'enabeld' in schedule 'jitter' (did you mean"
                                  " 'enabled'?)"),
]


def test_a_file_with_a_dozen_mistakes_reports_every_one_where_it_is() -> None:
    found = problems_of(FIXTURES / "dozen-mistakes.yaml")
    for where, what in DOZEN:
        matches = [p for p in found if where in p and what in p]
        assert matches, f"missing {where} {what!r} in:\n" + "\n".join(found)
    assert len(found) == len(DOZEN)


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 2\nschedules: []\n", "1:10: version must be 1, not '2'"),
    ("schedules: []\n", "1:1: the file needs 'version: 1' at the top."),
    ("version: 1\n", "1:1: the file has no 'schedules' list."),
    ("- a\n- b\n", "1:1: the file must be a mapping, not a list."),
    ("version: 1\nschedules: {}\n", "2:12: schedules must be a list, not a mapping."),
    ("version: 1\nschedule: []\n", "2:1: unknown key 'schedule' in the file (did you mean"
                                   " 'schedules'?)."),
    ("version: 1\nendpoint: {token: {env: A, file: b}}\nschedules: []\n",
     "2:19: endpoint.token needs exactly one of"),
    ("version: 1\nendpoint: {token: {env: 'A-B'}}\nschedules: []\n",
     "must be an environment variable name"),
    ("version: 1\nendpoint: {rate_limit: fast}\nschedules: []\n",
     "2:24: endpoint.rate_limit must look like 200/s"),
    ("version: 1\nendpoint: {url: 'https://u:p@x.io/e'}\nschedules: []\n",
     "must not carry credentials"),
    ("version: 1\ndelivery: {initial_backoff: 2h, max_backoff: 1h}\nschedules: []\n",
     "delivery.max_backoff (1h) is shorter than delivery.initial_backoff (2h)"),
    ("version: 1\ndatabase: mysql://x/y\nschedules: []\n",
     "2:11: database: the ledger must be SQLite or PostgreSQL, not 'mysql'"),
    ("version: 1\ndatabase: 'postgresql+asyncpg://x/y'\nschedules: []\n",
     "2:11: database: the 'postgresql+asyncpg' driver is not supported"),
    ("version: 1\nendpoint: {url: 'http://api.example.com/hook'}\nschedules: []\n",
     "2:17: endpoint.url: plain http:// sends the token unencrypted to api.example.com"),
    ("version: 1\nendpoint: {url: 'http://api.example.com/hook', allow_insecure_http: true}\n"
     "schedules: []\n", None),
    ("version: 1\nendpoint: {url: 'http://[::1]:8080/hook'}\nschedules: []\n", None),
    ("version: 1\nendpoint: {ca_bundle: nope.pem}\nschedules: []\n",
     "endpoint.ca_bundle: cannot read"),
    ("version: 1\nmetrics: {listen: 'localhost:99999'}\nschedules: []\n",
     "metrics.listen: 'localhost:99999' is not an address"),
    ("version: 1\ndelivery: {retention: 10m}\nschedules: []\n",
     "delivery.retention must be at least 1h"),
    ("version: 1\ndatabase: '::'\nschedules: []\n", "2:11: database: '::' is not a database URL"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    users: [u]\n",
     "3:5: schedule 's' needs exactly one of 'cron', 'every' or 'at'; it has none"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 0s\n    users: [u]\n",
     "5:12: schedule 's': every must be at least 1s"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    at: tomorrow\n    users: [u]\n",
     "5:9: schedule 's': at must be a date-time"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    cron: '0 0 30 2 *'\n"
     "    users: [u]\n", "never fires"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    starts: 2027-01-01T00:00:00\n    ends: 2026-01-01T00:00:00\n    users: [u]\n",
     "7:11: schedule 's': ends (2026-01-01T00:00:00) is not after starts"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    users: [u]\n    enabled: yes\n", "7:14: schedule 's': enabled must be true or false;"
                                           " write true instead of 'yes'"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n    users: []\n",
     "6:12: schedule 's': users must be a list of at least one user, not an empty list"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    audience: a\n    users: [u]\n", "needs exactly one of 'audience' (a name) or 'users'"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: ''\n    every: 1h\n    users: [u]\n",
     "4:17: schedule 's': event_type is empty."),
    ("version: 1\nschedules:\n  - id: s\n    event_type: \"a\\x01b\"\n    every: 1h\n"
     "    users: [u]\n", "event_type contains the control character U+0001"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     f"    users: [{'x' * 2000}]\n", "a user id is 2,000 characters long; the limit is 1,024"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    users: [{timezone: UTC}]\n", "6:13: schedule 's': this user has no 'id'."),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    users: [{id: u, tags: [a]}]\n", "the user field 'tags' must be a single value"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    users: [u]\n    data: {a: '${app_user_id} $${literal}'}\n", None),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    cron: '0 9 * * mon-sun'\n"
     "    users: [u]\n", "mon-sat,sun"),
    ("version: 1\nschedules:\n  - id: s\n    event_type: e\n    every: 1h\n"
     "    timezone: user\n    users: [{id: u, timezone: Mars/Base}]\n",
     "7:31: schedule 's': timezone: unknown time zone 'Mars/Base'"),
    ("version: 1\nschedules:\n  - id: 7\n    event_type: e\n    every: 1h\n    users: [007]\n",
     None),
])
def test_single_problems_are_located_and_explained(tmp_path: Path, text: str,
                                                   expected: str | None) -> None:
    path = write(tmp_path, text)
    if expected is None:
        config.load(path)
        return
    found = problems_of(path)
    assert any(expected in p for p in found), "\n".join(found)
    assert all(p.startswith(str(path) + ":") for p in found)


def test_plain_scalars_are_strings_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nschedules:\n  - id: 7\n    event_type: e\n"
                           "    every: 1h\n    users: [007, yes, 1e3]\n")
    s = config.load(path).schedules[0]
    assert s.id == "7"
    assert [m.id for m in s.audience.iter_members()] == ["007", "yes", "1e3"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1h30m", 5400),
    ("250ms", 0.25), ("45", 45), ("1.5h", 5400), (" 10 s ", 10), ("0", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "-5s", "1h-30m", "nan", "inf", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        config.parse_duration(text)


def test_csv_audiences_report_problems_with_the_csv_location(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(
        "app_user_id,timezone,plan\n"
        "u1,Europe/Berlin,pro\n"
        "u2,Europe/Berln,pro\n"
        ",UTC,basic\n"
        "u4,UTC\n"
        "u5,UTC,pro\n")
    path = write(tmp_path, """\
        version: 1
        audiences:
          people: {file: people.csv}
        schedules: []
        """)
    found = problems_of(path)
    csv = str(tmp_path / "people.csv")
    assert f"{csv}:3: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?);" \
           " use an IANA name such as 'Europe/Berlin'." in found
    assert f"{csv}:4: app_user_id is empty." in found
    assert f"{csv}:5: the row has 2 fields but the header has 3." in found
    assert any(p.startswith(f"{path}:3:18: audience 'people': the CSV file") for p in found)


@pytest.mark.parametrize(("content", "expected"), [
    ("", "1: the file is empty; it needs a header row starting with app_user_id."),
    ("id,timezone\nu1,UTC\n", "1: the header has no 'app_user_id' column"),
    ("app_user_id,app_user_id\n", "1: the header names 'app_user_id' twice."),
    (b"app_user_id\nu\xff\n", "invalid UTF-8 (byte 0xff)"),
    (b"app_user_id\nu\x00x\n", "2:"),
])
def test_malformed_csv_files(tmp_path: Path, content: str | bytes, expected: str) -> None:
    csv = tmp_path / "a.csv"
    if isinstance(content, bytes):
        csv.write_bytes(content)
    else:
        csv.write_text(content)
    path = write(tmp_path, "version: 1\naudiences:\n  a: {file: a.csv}\nschedules: []\n")
    found = problems_of(path)
    assert any(p.startswith(str(csv) + ":") and expected in p for p in found), found


def test_csv_problems_are_capped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("app_user_id,timezone\n" + "u,Nowhere/City\n" * 5000)
    path = write(tmp_path, "version: 1\naudiences:\n  a: {file: a.csv}\nschedules: []\n")
    with pytest.raises(InvalidInput) as info:
        config.load(path)
    text = str(info.value)
    assert "... and 4980 more problems in this file." in text
    assert text.count("unknown time zone") == 20


def test_placeholders_may_use_csv_columns_and_inline_fields(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("app_user_id,timezone,plan\nu1,UTC,pro\n")
    path = write(tmp_path, """\
        version: 1
        audiences:
          a: {file: a.csv}
        schedules:
          - id: csv
            event_type: e
            every: 1h
            audience: a
            data: {plan: "${user.plan}", tz: "${user.timezone}", id: "${user.app_user_id}"}
          - id: inline
            event_type: e
            every: 1h
            users: [{id: u1, name: Ada}, {id: u2}]
            data: {name: "${user.name}"}
        """)
    found = problems_of(path)
    assert len(found) == 1
    assert "${user.name} cannot be filled for user 'u2', who has no 'name' field." in found[0]
    assert ":14:" in found[0]


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(sub, """\
        version: 1
        database: sqlite:///state/ledger.db
        endpoint: {token: {file: secret/token}}
        schedules: []
        """)
    cfg = config.load(path)
    assert cfg.database == f"sqlite:///{sub}/state/ledger.db"
    assert cfg.endpoint.token == config.TokenSource("file", str(sub / "secret" / "token"))


def test_postgres_urls_are_kept_as_written(tmp_path: Path) -> None:
    url = "postgresql+psycopg://user:pw@db.example/eventcron"
    cfg = config.load(write(tmp_path, f"version: 1\ndatabase: '{url}'\nschedules: []\n"))
    assert cfg.database == url


def test_timings_of_each_kind(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        version: 1
        schedules:
          - {id: c, event_type: e, cron: "0 9 * * *", timezone: Europe/Berlin, users: [u]}
          - {id: e, event_type: e, every: 15m, starts: "2026-01-01T00:07:00", users: [u]}
          - {id: a, event_type: e, at: "2026-12-24T09:00:00", timezone: Asia/Tokyo, users: [u]}
        """)
    c, e, a = config.load(path).schedules
    after = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert isinstance(c.timing("Europe/Berlin"), CronTiming)
    assert c.timing("Europe/Berlin").next_after(after) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    timing = e.timing("UTC")
    assert isinstance(timing, EveryTiming)
    assert timing.next_after(after) == datetime(2026, 12, 1, 12, 7, tzinfo=UTC)
    assert isinstance(a.timing("Asia/Tokyo"), AtTiming)
    assert a.timing("Asia/Tokyo").next_after(after) == datetime(2026, 12, 24, 0, 0, tzinfo=UTC)
    assert a.timing("Asia/Tokyo").next_after(datetime(2026, 12, 24, tzinfo=UTC)) is None


def test_user_zones_make_one_job_per_zone_with_utc_as_fallback(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        version: 1
        schedules:
          - id: s
            event_type: e
            cron: "0 9 * * *"
            timezone: user
            users: [{id: a, timezone: Asia/Tokyo}, {id: b}, {id: c, timezone: Asia/Tokyo}]
        """)
    s = config.load(path).schedules[0]
    assert s.zones() == ("Asia/Tokyo", "UTC")
    assert [m.id for m in s.members("Asia/Tokyo")] == ["a", "c"]
    assert [m.id for m in s.members("UTC")] == ["b"]


def test_fingerprint_changes_with_timing_only(tmp_path: Path) -> None:
    base = config.load(write(tmp_path, MINIMAL)).schedules[0]
    data_edit = config.load(write(tmp_path, MINIMAL + "    data: {a: 1}\n", "b.yaml")).schedules[0]
    cron_edit = config.load(write(tmp_path, MINIMAL.replace("0 9", "0 10"), "c.yaml")).schedules[0]
    assert base.fingerprint() == data_edit.fingerprint()
    assert base.fingerprint() != cron_edit.fingerprint()


def test_templates_render_json_escaped_values() -> None:
    t = DataTemplate.compile({"greet": "Hi ${user.name}!", "lit": "$${x}", "n": 1})
    assert not t.constant
    assert t.names == {"user.name"}
    assert t.render({"user.name": 'A "quoted"\nname'}) == (
        '{"greet":"Hi A \\"quoted\\"\\nname!","lit":"${x}","n":1}')
    assert DataTemplate.compile({"a": [1, 2]}).constant


def test_window_bounds_are_wall_time_in_the_schedule_zone(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        version: 1
        schedules:
          - id: s
            event_type: e
            cron: "0 * * * *"
            timezone: Europe/Berlin
            starts: 2026-12-01T10:00:00
            ends: 2026-12-01T12:00:00
            users: [u]
        """)
    s = config.load(path).schedules[0]
    timing = s.timing("Europe/Berlin")
    fires = []
    t = timing.next_after(datetime(2026, 11, 30, tzinfo=UTC))
    while t is not None:
        fires.append(t)
        t = timing.next_after(t)
    assert fires == [datetime(2026, 12, 1, h, tzinfo=UTC) for h in (9, 10, 11)]
    assert fires[-1] - fires[0] == timedelta(hours=2)


REVERSED_WEEKDAYS = """\
version: 1
schedules:
  - id: weekend
    event_type: e
    cron: "0 9 * * fri-sun"
    users: [u]
  - id: weekend-numbers
    event_type: e
    cron: '0 9 * * 5-0'
    users: [u]
"""


def test_a_reversed_weekday_range_is_refused_where_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A deliberate difference from cronie (README): its current source wraps `fri-sun`
    # round the week, its 1.7.2 release never fires it; eventcron refuses it and says what
    # to write instead.
    path = write(tmp_path, REVERSED_WEEKDAYS)
    assert problems_of(path) == [
        f"{path}:5:20: schedule 'weekend': bad cron expression '0 9 * * fri-sun': day of week"
        " range 'fri-sun' is reversed; ranges run from low to high, so use fri-sat,sun"
        " or 5-7.",
        f"{path}:9:20: schedule 'weekend-numbers': bad cron expression '0 9 * * 5-0': day of"
        " week range '5-0' is reversed; ranges run from low to high, so use 5-6,0 or 5-7.",
    ]
    assert cli.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:5:20: schedule 'weekend': bad cron expression" in err
    assert "so use fri-sat,sun or 5-7." in err
    assert f"{path}:9:20: schedule 'weekend-numbers': bad cron expression" in err
    assert "so use 5-6,0 or 5-7." in err
    assert "2 problems" in err
    # What the README suggests instead is valid and means Friday to Sunday.
    fixed = write(tmp_path, REVERSED_WEEKDAYS.replace("fri-sun", "fri,sat,sun")
                  .replace("5-0", "0,5-6"), "fixed.yaml")
    for schedule in config.load(fixed).schedules:
        timing = schedule.timing("UTC")
        t = timing.next_after(datetime(2026, 3, 2, tzinfo=UTC))  # a Monday
        fires: list[datetime] = []
        while t is not None and len(fires) < 4:
            fires.append(t)
            t = timing.next_after(t)
        assert [f.strftime("%a %d") for f in fires] == ["Fri 06", "Sat 07", "Sun 08", "Fri 13"]
