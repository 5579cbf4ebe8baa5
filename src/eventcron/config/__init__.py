"""The schedule file: YAML in, a frozen and fully validated :class:`Config` out.

Every problem in a file is reported at once as ``path:line:col: message``; a file with any
problem yields no Config at all, so a bad edit is never half-applied. Keys of each section
come from :mod:`eventcron.config.schema`, the same source the JSON Schema is printed from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

from eventcron.config import schema
from eventcron.config.audience import (
    ID_COLUMN,
    TZ_COLUMN,
    Audience,
    Member,
    check_id,
    check_zone,
    duplicate_message,
    scan_csv,
)
from eventcron.config.locate import CONFIG_ENV, DEFAULT_CONFIG, STATE_DIRECTORY_ENV
from eventcron.config.template import BUILTIN_NAMES, USER_PREFIX, DataTemplate, placeholders
from eventcron.config.yamlsource import (
    DataError,
    MappingNode,
    Node,
    Scalar,
    SequenceNode,
    entries,
    kind_of,
    parse_bytes,
    read_raw,
    to_json,
)
from eventcron.problems import InvalidInput, Problems, did_you_mean, quote_list
from eventcron.timing import (
    UTC,
    AtTiming,
    CronExpr,
    CronSyntaxError,
    CronTiming,
    EveryTiming,
    Timing,
    resolve_wall,
)

DEFAULT_URL: Final = "https://api.init.ai/api/v1/webhook/event"
DEFAULT_TOKEN_ENV: Final = "EVENTCRON_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_TIMEOUT: Final = 10.0  # seconds per request, connect to last byte
DEFAULT_CONCURRENCY: Final = 32  # requests in flight
MAX_CONCURRENCY: Final = 10_000  # requests in flight
DEFAULT_MAX_ATTEMPTS: Final = 10  # attempts per event
DEFAULT_INITIAL_BACKOFF: Final = 30.0  # seconds
DEFAULT_MAX_BACKOFF: Final = 3600.0  # seconds
DEFAULT_EXPIRES_AFTER: Final = 6 * 3600.0  # seconds after the nominal time
DEFAULT_CATCH_UP: Final = 3600.0  # seconds before start-up
DEFAULT_RETENTION: Final = 30 * 86400.0  # seconds final rows are kept after their last change
DEFAULT_CLAIM_LEASE: Final = 60.0  # seconds a claim outlives a silent instance
DEFAULT_HOST: Final = "127.0.0.1"  # listeners bind to loopback unless told otherwise
DEFAULT_LEDGER_FILE: Final = "eventcron.db"  # beside the schedule file, unless told
DEFAULT_ZONE: Final = "UTC"
USER_ZONE: Final = "user"  # `timezone: user`: each user's own zone
MIN_EVERY: Final = 1.0  # seconds: the shortest `every` interval

CatchUpMode = Literal["latest", "all", "none"]
Kind = Literal["cron", "every", "at"]

_DURATION_PART: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RATE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*\Z")


def parse_duration(text: str) -> float:
    """Parse ``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number into seconds.

    Raises ValueError with a sentence when the text is not a duration.
    """
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        pass
    else:
        if not 0 <= seconds < float("inf"):  # also refuses NaN
            raise ValueError(f"{text!r} is not a duration; it must not be negative.")
        return seconds
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(stripped):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(stripped) or not stripped:
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m, 1h30m or 2d.")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``90`` → ``1m30s``) for messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


# --- the validated objects -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where the API token comes from: an environment variable, a file or a credential."""

    kind: Literal["env", "file", "credential"]
    value: str  # variable name, absolute path, or credential name

    def describe(self) -> str:
        """Say where the token is read from, for messages (never the token itself)."""
        if self.kind == "env":
            return f"the environment variable {self.value}"
        if self.kind == "file":
            return f"the file {self.value}"
        return f"the systemd credential {self.value!r}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The receiving API and how hard to push it."""

    url: str = DEFAULT_URL
    token: TokenSource = TokenSource("env", DEFAULT_TOKEN_ENV)
    timeout: float = DEFAULT_TIMEOUT  # seconds
    concurrency: int = DEFAULT_CONCURRENCY  # requests in flight
    rate_limit: float | None = None  # requests per second; None for no limit
    ca_bundle: str | None = None  # absolute path of a PEM bundle; None: the system's CAs
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """Retry, expiry and catch-up policy."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF  # seconds
    max_backoff: float = DEFAULT_MAX_BACKOFF  # seconds
    expires_after: float = DEFAULT_EXPIRES_AFTER  # seconds
    catch_up: float = DEFAULT_CATCH_UP  # seconds
    catch_up_mode: CatchUpMode = "latest"
    retention: float = DEFAULT_RETENTION  # seconds
    claim_lease: float = DEFAULT_CLAIM_LEASE  # seconds


@dataclass(frozen=True, slots=True)
class Schedule:
    """One validated schedule: when, to whom, what."""

    id: str
    event_type: str
    kind: Kind
    timezone: str  # an IANA name, or USER_ZONE
    audience: Audience
    data: DataTemplate
    cron: CronExpr | None = None
    every: float | None = None  # seconds
    at: datetime | None = None  # naive: wall time in the zone; aware: an instant
    jitter: float = 0.0  # seconds
    starts: datetime | None = None  # naive or aware, as `at`
    ends: datetime | None = None
    enabled: bool = True
    description: str = ""
    line: int = 0  # where the schedule starts in the file

    def zones(self) -> tuple[str, ...]:
        """Return the zones this schedule fires in: one job runs per zone."""
        if self.timezone != USER_ZONE:
            return (self.timezone,)
        return tuple(sorted({z or DEFAULT_ZONE for z in self.audience.timezones})) or (
            DEFAULT_ZONE,
        )

    def zone_of(self, member: Member) -> str:
        """Return the zone this schedule serves ``member`` in (the one path for run and next)."""
        if self.timezone != USER_ZONE:
            return self.timezone
        return member.timezone or DEFAULT_ZONE

    def members(self, zone: str) -> Iterator[Member]:
        """Yield the audience members the job for ``zone`` serves."""
        if self.timezone != USER_ZONE:
            return self.audience.iter_members()
        return (m for m in self.audience.iter_members() if self.zone_of(m) == zone)

    def timing(self, zone: str) -> Timing:
        """Return the fire-time calculator of this schedule in one of its zones."""
        tz = zoneinfo.ZoneInfo(zone)
        starts = _instant(self.starts, tz)
        ends = _instant(self.ends, tz)
        if self.kind == "cron":
            assert self.cron is not None
            return CronTiming(self.cron, tz, starts, ends)
        if self.kind == "every":
            assert self.every is not None
            anchor = starts or datetime(1970, 1, 1, tzinfo=UTC)
            return EveryTiming(timedelta(seconds=self.every), anchor, starts, ends)
        assert self.at is not None
        instant = _instant(self.at, tz)
        assert instant is not None
        return AtTiming(instant)

    def fingerprint(self) -> str:
        """Hash what decides fire times, so an edited schedule can restart from now."""
        parts = [self.kind, self.cron.source if self.cron else "", repr(self.every),
                 _iso(self.at), self.timezone, _iso(self.starts), _iso(self.ends)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _instant(value: datetime | None, tz: zoneinfo.ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return resolve_wall(value, tz)


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated schedule file."""

    path: Path
    database: str  # SQLAlchemy URL, relative SQLite paths already resolved
    endpoint: Endpoint
    delivery: Delivery
    audiences: dict[str, Audience]
    schedules: tuple[Schedule, ...]
    metrics_listen: tuple[str, int] | None = None  # (host, port); None: no metrics
    sha256: str = ""  # of the file's bytes: which plan an instance runs

    def schedule(self, schedule_id: str) -> Schedule | None:
        """Return the schedule with this id, or None."""
        for s in self.schedules:
            if s.id == schedule_id:
                return s
        return None


def resolve_config_path(explicit: str | None) -> Path:
    """Pick the schedule file: ``--config``, then ``$EVENTCRON_CONFIG``, then the default."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load(path: Path) -> Config:
    """Read, parse and validate a schedule file; raise :class:`InvalidInput` on any problem."""
    raw = read_raw(path)
    cfg = _Reader(path).config(parse_bytes(raw, str(path)))
    return dataclasses.replace(cfg, sha256=hashlib.sha256(raw).hexdigest())


def database_of(path: Path) -> str | None:
    """Return the ledger URL a schedule file names, reading nothing but its ``database`` key.

    For a file that is invalid elsewhere: when it parses as YAML with a mapping at the top,
    its single ``database`` value (relative SQLite paths resolved as :func:`load` does), or
    the default ledger when it has none. None when even that much cannot be read.
    """
    try:
        root = parse_bytes(read_raw(path), str(path))
    except InvalidInput:
        return None
    if not isinstance(root, MappingNode):
        return None
    found = [value for key, value in entries(root) if key.text == "database"]
    if not found:
        return default_database(path.parent)
    reader = _Reader(path)
    url = reader.database(found[0]) if len(found) == 1 else None
    return url if not reader.problems else None


# --- the reader ------------------------------------------------------------------------------


_Fields = dict[str, tuple[Scalar, Node]]


class _Reader:
    """Walks the node tree, collecting every problem before giving up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.base = path.parent
        self.problems = Problems()

    # reporting

    def error(self, node: Node, message: str, *, offset: int = 0) -> None:
        col = node.text_col() + offset if isinstance(node, Scalar) and offset else node.col
        self.problems.add(self.name, node.line, col, message)

    # structure

    def fields(self, node: Node, section: dict[str, Any], where: str) -> _Fields | None:
        """Check a mapping against a schema section: type, unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            if isinstance(node, Scalar) and node.is_null:
                return {}
            self.error(node, f"{where} must be a mapping, not {kind_of(node)}.")
            return None
        allowed = schema.keys(section)
        out: _Fields = {}
        for key_node, _ in node.pairs:
            if not isinstance(key_node, Scalar):
                self.error(key_node, f"keys in {where} must be plain names, not"
                           f" {kind_of(key_node)}.")
        for key, value in entries(node):
            name = key.text
            if name in out:
                self.error(key, f"{name!r} appears twice in {where} (first on line"
                           f" {out[name][0].line}).")
                continue
            if name not in allowed:
                self.error(key, f"unknown key {name!r} in {where}{did_you_mean(name, allowed)}.")
                continue
            out[name] = (key, value)
        return out

    def string(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        """Read a string; plain scalars count as strings exactly as written (``007`` stays)."""
        if not isinstance(node, Scalar):
            self.error(node, f"{what} must be a string, not {kind_of(node)}.")
            return None
        if node.tag is not None and node.tag != "tag:yaml.org,2002:str":
            self.error(node, f"{what}: YAML tags such as {node.tag} are not supported.")
            return None
        if node.is_null:
            if allow_empty:
                return ""
            self.error(node, f"{what} has no value.")
            return None
        return node.text

    def name_value(self, node: Node, what: str) -> str | None:
        """Read an id or event type: a string without control characters, of sane length."""
        value = self.string(node, what)
        if value is None:
            return None
        problem = check_id(value, what)
        if problem:
            self.error(node, problem)
            return None
        return value

    def integer(self, node: Node, what: str, low: int, high: int) -> int | None:
        """Read a whole number in ``[low, high]``."""
        if isinstance(node, Scalar) and node.plain and re.fullmatch(r"[-+]?\d+", node.text):
            value = int(node.text)
            if low <= value <= high:
                return value
        self.error(node, f"{what} must be a whole number from {low:,} to {high:,}, not"
                   f" {_shown(node)}.")
        return None

    def boolean(self, node: Node, what: str) -> bool | None:
        """Read true or false (YAML 1.1 spellings such as ``yes`` get a hint, not a guess)."""
        if isinstance(node, Scalar) and node.plain:
            low = node.text.lower()
            if low == "true":
                return True
            if low == "false":
                return False
            if low in ("yes", "on", "y"):
                self.error(node, f"{what} must be true or false; write true instead of"
                           f" {node.text!r}.")
                return None
            if low in ("no", "off", "n"):
                self.error(node, f"{what} must be true or false; write false instead of"
                           f" {node.text!r}.")
                return None
        self.error(node, f"{what} must be true or false, not {_shown(node)}.")
        return None

    def duration(self, node: Node, what: str, *, minimum: float = 0.0) -> float | None:
        """Read a duration into seconds."""
        if not isinstance(node, Scalar):
            self.error(node, f"{what} must be a duration such as 30s or 5m, not {kind_of(node)}.")
            return None
        try:
            seconds = parse_duration(node.text)
        except ValueError as e:
            self.error(node, f"{what}: {e}")
            return None
        if seconds < minimum:
            self.error(node, f"{what} must be at least {format_duration(minimum)}, not"
                       f" {node.text!r}.")
            return None
        return seconds

    def timestamp(self, node: Node, what: str) -> datetime | None:
        """Read an ISO 8601 date or date-time; naive means wall time in the schedule's zone."""
        text = self.string(node, what)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            self.error(node, f"{what} must be a date-time such as 2026-12-01T09:00:00, not"
                       f" {text!r}.")
            return None
        return value

    def zone(self, node: Node, what: str, *, allow_user: bool = False) -> str | None:
        """Read an IANA time zone name (or ``user`` where allowed)."""
        text = self.string(node, what)
        if text is None:
            return None
        if allow_user and text == USER_ZONE:
            return text
        problem = check_zone(text)
        if problem:
            self.error(node, f"{what}: {problem}")
            return None
        return text

    # sections

    def config(self, root: Node) -> Config:
        top = self.fields(root, schema.TOP, "the file")
        if top is None or (not top and not isinstance(root, MappingNode)):
            self.problems.raise_if_any()
        top = top or {}
        if "version" not in top:
            self.problems.add(self.name, root.line, root.col, "the file needs 'version: 1' at"
                              " the top.")
        else:
            value = top["version"][1]
            if not (isinstance(value, Scalar) and value.plain and value.text == "1"):
                self.error(value, f"version must be 1, not {_shown(value)}; this eventcron"
                           " reads version 1 files.")
        endpoint = self.endpoint(top["endpoint"][1]) if "endpoint" in top else Endpoint()
        delivery = self.delivery(top["delivery"][1]) if "delivery" in top else Delivery()
        if endpoint is not None and delivery is not None and (
                delivery.claim_lease <= endpoint.timeout):
            where = top["delivery"][1] if "delivery" in top else root
            self.error(where, f"delivery.claim_lease ({format_duration(delivery.claim_lease)})"
                       f" must be longer than endpoint.timeout"
                       f" ({format_duration(endpoint.timeout)}), or a slow request could be"
                       " taken over and sent twice.")
        database = self.database(top["database"][1]) if "database" in top else (
            default_database(self.base))
        audiences = self.audiences(top["audiences"][1]) if "audiences" in top else {}
        listen = self.metrics(top["metrics"][1]) if "metrics" in top else None
        schedules: tuple[Schedule, ...] = ()
        if "schedules" not in top:
            self.problems.add(self.name, root.line, root.col, "the file has no 'schedules'"
                              " list.")
        else:
            schedules = self.schedules(top["schedules"][1], audiences)
        self.problems.raise_if_any()
        assert endpoint is not None and delivery is not None and database is not None
        return Config(self.path, database, endpoint, delivery,
                      {k: v for k, v in audiences.items() if v is not None}, schedules, listen)

    def metrics(self, node: Node) -> tuple[str, int] | None:
        f = self.fields(node, schema.METRICS, "metrics")
        if not f or "listen" not in f:
            return None
        value = f["listen"][1]
        text = self.string(value, "metrics.listen")
        if text is None:
            return None
        try:
            return parse_listen(text)
        except ValueError as e:
            self.error(value, f"metrics.listen: {e}.")
            return None

    def endpoint(self, node: Node) -> Endpoint | None:
        f = self.fields(node, schema.ENDPOINT, "endpoint")
        if f is None:
            return None
        d = Endpoint()
        url = self.url(f["url"][1]) if "url" in f else d.url
        token = self.token(f["token"][1]) if "token" in f else d.token
        timeout = (self.duration(f["timeout"][1], "endpoint.timeout", minimum=0.001)
                   if "timeout" in f else d.timeout)
        concurrency = (self.integer(f["concurrency"][1], "endpoint.concurrency", 1,
                                    MAX_CONCURRENCY) if "concurrency" in f else d.concurrency)
        rate = self.rate(f["rate_limit"][1]) if "rate_limit" in f else None
        insecure = (self.boolean(f["allow_insecure_http"][1], "endpoint.allow_insecure_http")
                    if "allow_insecure_http" in f else False)
        bundle = self.ca_bundle(f["ca_bundle"][1]) if "ca_bundle" in f else None
        if url is not None and insecure is not None and not insecure:
            parts = urlsplit(url)
            if parts.scheme == "http" and not _loopback(parts.hostname or ""):
                self.error(f["url"][1], f"endpoint.url: plain http:// sends the token"
                           f" unencrypted to {parts.hostname}; use https://, or set"
                           " endpoint.allow_insecure_http: true if you must.")
                return None
        if (url is None or token is None or timeout is None or concurrency is None
                or insecure is None or ("ca_bundle" in f and bundle is None)):
            return None
        return Endpoint(url, token, timeout, concurrency, rate, bundle, insecure)

    def ca_bundle(self, node: Node) -> str | None:
        text = self.string(node, "endpoint.ca_bundle")
        if text is None:
            return None
        path = Path(text) if Path(text).is_absolute() else (self.base / text).resolve()
        try:
            with path.open("rb") as f:
                head = f.read(64 * 1024)
        except OSError as e:
            self.error(node, f"endpoint.ca_bundle: cannot read {path}: {e.strerror}.")
            return None
        if b"-----BEGIN CERTIFICATE-----" not in head:
            self.error(node, f"endpoint.ca_bundle: {path} holds no PEM certificate.")
            return None
        return str(path)

    def url(self, node: Node) -> str | None:
        text = self.string(node, "endpoint.url")
        if text is None:
            return None
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.error(node, f"endpoint.url must be an http:// or https:// URL, not {text!r}.")
            return None
        if parts.username or parts.password:
            self.error(node, "endpoint.url must not carry credentials; put the token under"
                       " endpoint.token.")
            return None
        return text.strip()

    def token(self, node: Node) -> TokenSource | None:
        f = self.fields(node, schema.ENDPOINT["properties"]["token"], "endpoint.token")
        if f is None:
            return None
        if len(f) != 1:
            self.error(node, "endpoint.token needs exactly one of 'env', 'file' or"
                       f" 'credential', not {len(f)}.")
            return None
        (kind, (_, value)), = f.items()
        text = self.string(value, f"endpoint.token.{kind}")
        if text is None:
            return None
        if kind == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
            self.error(value, f"endpoint.token.env must be an environment variable name, not"
                       f" {text!r}.")
            return None
        if kind == "credential" and ("/" in text or text in (".", "..")):
            self.error(value, f"endpoint.token.credential must be a credential name without"
                       f" '/', not {text!r}.")
            return None
        if kind == "file":
            text = str((self.base / text).resolve()) if not Path(text).is_absolute() else text
        assert kind in ("env", "file", "credential")
        return TokenSource(kind, text)  # type: ignore[arg-type]

    def rate(self, node: Node) -> float | None:
        text = self.string(node, "endpoint.rate_limit")
        if text is None:
            return None
        m = _RATE.match(text)
        if not m or float(m.group(1)) <= 0:
            self.error(node, f"endpoint.rate_limit must look like 200/s, 600/m or 10000/h, not"
                       f" {text!r}.")
            return None
        return float(m.group(1)) / _UNIT_SECONDS[m.group(2)]

    def delivery(self, node: Node) -> Delivery | None:
        f = self.fields(node, schema.DELIVERY, "delivery")
        if f is None:
            return None
        d = Delivery()

        def dur(key: str, default: float, minimum: float = 0.0) -> float | None:
            if key not in f:
                return default
            return self.duration(f[key][1], f"delivery.{key}", minimum=minimum)

        attempts = (self.integer(f["max_attempts"][1], "delivery.max_attempts", 1, 1000)
                    if "max_attempts" in f else d.max_attempts)
        initial = dur("initial_backoff", d.initial_backoff, 0.001)
        maximum = dur("max_backoff", d.max_backoff, 0.001)
        expires = dur("expires_after", d.expires_after, 1.0)
        catch_up = dur("catch_up", d.catch_up)
        retention = dur("retention", d.retention, 3600.0)
        lease = dur("claim_lease", d.claim_lease, 5.0)
        mode: str | None = d.catch_up_mode
        if "catch_up_mode" in f:
            node_mode = f["catch_up_mode"][1]
            mode = self.string(node_mode, "delivery.catch_up_mode")
            if mode is not None and mode not in ("latest", "all", "none"):
                choices = ("latest", "all", "none")
                self.error(node_mode, f"delivery.catch_up_mode must be {quote_list(choices)},"
                           f" not {mode!r}{did_you_mean(mode, choices)}.")
                mode = None
        if initial is not None and maximum is not None and maximum < initial:
            self.error(f["max_backoff"][1] if "max_backoff" in f else f["initial_backoff"][1],
                       f"delivery.max_backoff ({format_duration(maximum)}) is shorter than"
                       f" delivery.initial_backoff ({format_duration(initial)}).")
            return None
        if (attempts is None or initial is None or maximum is None or expires is None
                or catch_up is None or mode is None or retention is None or lease is None):
            return None
        return Delivery(attempts, initial, maximum, expires, catch_up,
                        mode, retention, lease)  # type: ignore[arg-type]

    def database(self, node: Node) -> str | None:
        text = self.string(node, "database")
        if text is None:
            return None
        try:
            url = database_url(text)
        except ValueError as e:
            self.error(node, f"database: {e}")
            return None
        return _resolve_sqlite(url, self.base)

    def audiences(self, node: Node) -> dict[str, Audience | None]:
        out: dict[str, Audience | None] = {}
        if isinstance(node, Scalar) and node.is_null:
            return out
        if not isinstance(node, MappingNode):
            self.error(node, f"audiences must be a mapping of names to audiences, not"
                       f" {kind_of(node)}.")
            return out
        for key, value in entries(node):
            name = key.text
            if name in out:
                self.error(key, f"the audience {name!r} is defined twice.")
                continue
            problem = check_id(name, "the audience name")
            if problem:
                self.error(key, problem)
                continue
            out[name] = self.audience(value, f"audience {name!r}", name)
        return out

    def audience(self, node: Node, where: str, name: str) -> Audience | None:
        f = self.fields(node, schema.AUDIENCE, where)
        if f is None:
            return None
        if len(f) != 1:
            self.error(node, f"{where} needs exactly one of 'users' or 'file'.")
            return None
        if "users" in f:
            return self.inline_users(f["users"][1], where, name)
        return self.csv_audience(f["file"][1], where, name)

    def csv_audience(self, node: Node, where: str, name: str) -> Audience | None:
        text = self.string(node, f"{where}: file")
        if text is None:
            return None
        path = Path(text)
        if not path.is_absolute():
            path = self.base / path
        scan = scan_csv(path)
        if scan.problems:
            # Point at the reference in the schedule file too, so the link is clear.
            self.error(node, f"{where}: the CSV file {text!r} has problems (listed with their"
                       " own file and line).")
            self.problems.extend(scan.problems.items)
            if scan.problems.dropped:
                self.problems.add(str(path), 1, None, f"... and {scan.problems.dropped} more"
                                  " problems in this file.")
            return None
        return Audience(name, scan.columns, frozenset(scan.timezones), scan.size, file=path,
                        stamp=scan.stamp)

    def inline_users(self, node: Node, where: str, name: str | None) -> Audience | None:
        if not isinstance(node, SequenceNode) or not node.items:
            what = "an empty list" if isinstance(node, SequenceNode) else kind_of(node)
            self.error(node, f"{where}: users must be a list of at least one user, not {what}.")
            return None
        raw: list[tuple[Node, str, str | None, dict[str, str]]] = []
        ok = True
        seen: dict[str, int] = {}
        for item in node.items:
            parsed = self.user(item, where)
            if parsed is None:
                ok = False
                continue
            uid, tz, extra = parsed
            if uid in seen:
                first = f"{self.name}:{seen[uid]}"
                self.error(item, f"{where}: {duplicate_message(uid, first)}")
                ok = False
                continue
            seen[uid] = item.line
            raw.append((item, uid, tz, extra))
        if not ok:
            return None
        columns = tuple(dict.fromkeys(k for _, _, _, extra in raw for k in extra))
        members = tuple(Member(uid, tz, tuple(extra.get(c, "") for c in columns))
                        for _, uid, tz, extra in raw)
        gaps = {c: next(uid for _, uid, _, extra in raw if c not in extra)
                for c in columns if any(c not in extra for _, _, _, extra in raw)}
        return Audience(name, columns, frozenset(m.timezone for m in members), len(members),
                        members=members, gaps=gaps)

    def user(self, node: Node, where: str) -> tuple[str, str | None, dict[str, str]] | None:
        if isinstance(node, Scalar):
            plain_id = self.name_value(node, f"{where}: a user id")
            return (plain_id, None, {}) if plain_id is not None else None
        if not isinstance(node, MappingNode):
            self.error(node, f"{where}: a user must be an id or a mapping with 'id', not"
                       f" {kind_of(node)}.")
            return None
        uid: str | None = None
        tz: str | None = None
        extra: dict[str, str] = {}
        ok = True
        seen: set[str] = set()
        for key, value in entries(node):
            k = key.text
            if k in seen:
                self.error(key, f"{where}: the field {k!r} appears twice for one user.")
                ok = False
                continue
            seen.add(k)
            if k in ("id", ID_COLUMN):
                uid = self.name_value(value, f"{where}: the user id")
                ok = ok and uid is not None
            elif k == TZ_COLUMN:
                tz = self.zone(value, f"{where}: timezone")
                ok = ok and tz is not None
            elif isinstance(value, Scalar) and not value.is_null:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                    self.error(key, f"{where}: the field name {k!r} must be letters, digits and"
                               " underscores, to be usable as ${user." + k + "}.")
                    ok = False
                    continue
                extra[k] = value.text
            else:
                self.error(value, f"{where}: the user field {k!r} must be a single value, not"
                           f" {kind_of(value)}.")
                ok = False
        if uid is None:
            if ok:
                self.error(node, f"{where}: this user has no 'id'.")
            return None
        return (uid, tz, extra) if ok else None

    def schedules(self, node: Node, audiences: dict[str, Audience | None]) -> tuple[Schedule, ...]:
        if not isinstance(node, SequenceNode):
            if isinstance(node, Scalar) and node.is_null:
                return ()
            self.error(node, f"schedules must be a list, not {kind_of(node)}.")
            return ()
        out: list[Schedule] = []
        ids: dict[str, int] = {}
        for index, item in enumerate(node.items):
            if self.problems.full:
                # A file this broken is not worth reading to the end; stop in bounded time.
                left = len(node.items) - index
                self.problems.add(self.name, item.line, None, f"stopped checking here after"
                                  f" {len(self.problems)} problems; {left:,} more schedules"
                                  " were not checked.", force=True)
                break
            sched = self.schedule(item, index, audiences, ids)
            if sched is not None:
                out.append(sched)
        return tuple(out)

    def schedule(self, node: Node, index: int, audiences: dict[str, Audience | None],
                 ids: dict[str, int]) -> Schedule | None:
        where = f"schedules[{index}]"
        if isinstance(node, MappingNode):  # name it by its id in every message, when it has one
            given_id = next((v.text for k, v in entries(node) if k.text == "id"
                             and isinstance(v, Scalar) and not v.is_null), None)
            if given_id is not None and check_id(given_id, "id") is None:
                where = f"schedule {given_id!r}"
        f = self.fields(node, schema.SCHEDULE, where)
        if f is None:
            return None
        ok = True
        sid: str | None = None
        if "id" in f:
            sid = self.name_value(f["id"][1], f"{where}: id")
            if sid is not None:
                if sid in ids:
                    self.error(f["id"][1], f"the schedule id {sid!r} is used twice (first on"
                               f" line {ids[sid]}); ids must be unique.")
                    ok = False
                else:
                    ids[sid] = f["id"][1].line
        else:
            self.error(node, f"{where} has no 'id'.")
            ok = False
        event_type: str | None = None
        if "event_type" in f:
            event_type = self.name_value(f["event_type"][1], f"{where}: event_type")
        else:
            self.error(node, f"{where} has no 'event_type'.")

        zone = DEFAULT_ZONE
        if "timezone" in f:
            z = self.zone(f["timezone"][1], f"{where}: timezone", allow_user=True)
            ok = ok and z is not None
            zone = z or zone

        # Check every timing key given, so one run reports all of their problems.
        cron = self.cron(f["cron"][1], where) if "cron" in f else None
        every = (self.duration(f["every"][1], f"{where}: every", minimum=MIN_EVERY)
                 if "every" in f else None)
        at = self.timestamp(f["at"][1], f"{where}: at") if "at" in f else None
        given = [k for k in ("cron", "every", "at") if k in f]
        parsed = [v for v in (cron, every, at) if v is not None]
        kind: Kind | None = None
        if len(given) != 1:
            target = f[given[1]][0] if len(given) > 1 else node
            said = f"has {quote_list(given, 'and')}" if given else "has none of them"
            self.error(target, f"{where} needs exactly one of 'cron', 'every' or 'at'; it"
                       f" {said}.")
            ok = False
        elif len(parsed) == 1:
            kind = "cron" if cron is not None else "every" if every is not None else "at"

        jitter = 0.0
        if "jitter" in f:
            j = self.duration(f["jitter"][1], f"{where}: jitter")
            ok = ok and j is not None
            jitter = j or 0.0
        starts = self.timestamp(f["starts"][1], f"{where}: starts") if "starts" in f else None
        ends = self.timestamp(f["ends"][1], f"{where}: ends") if "ends" in f else None
        if ("starts" in f and starts is None) or ("ends" in f and ends is None):
            ok = False
        if starts is not None and ends is not None:
            if (starts.tzinfo is None) != (ends.tzinfo is None):
                self.error(f["ends"][1], f"{where}: starts and ends must both have a UTC offset"
                           " or both have none.")
                ok = False
            elif ends <= starts:
                self.error(f["ends"][1], f"{where}: ends ({ends.isoformat()}) is not after starts"
                           f" ({starts.isoformat()}).")
                ok = False
        enabled = True
        if "enabled" in f:
            e = self.boolean(f["enabled"][1], f"{where}: enabled")
            ok = ok and e is not None
            enabled = bool(e) if e is not None else True
        description = ""
        if "description" in f:
            description = self.string(f["description"][1], f"{where}: description",
                                      allow_empty=True) or ""

        audience = self.schedule_audience(f, node, where, audiences)
        template = self.data(f["data"][1], where, audience) if "data" in f else (
            DataTemplate.compile({}))
        if (not ok or sid is None or event_type is None or kind is None or audience is None
                or template is None):
            return None
        return Schedule(sid, event_type, kind, zone, audience, template, cron=cron, every=every,
                        at=at, jitter=jitter, starts=starts, ends=ends, enabled=enabled,
                        description=description, line=node.line)

    def cron(self, node: Node, where: str) -> CronExpr | None:
        text = self.string(node, f"{where}: cron")
        if text is None:
            return None
        try:
            return CronExpr.parse(text)
        except CronSyntaxError as e:
            # Point into the expression when it sits on one line as written.
            assert isinstance(node, Scalar)
            single = node.end_line == node.line and node.style in (None, "'", '"')
            lead = len(text) - len(text.lstrip())
            self.error(node, f"{where}: bad cron expression {text.strip()!r}: {e}",
                       offset=(e.offset + lead) if single else 0)
            return None

    def schedule_audience(self, f: _Fields, node: Node, where: str,
                          audiences: dict[str, Audience | None]) -> Audience | None:
        if ("audience" in f) == ("users" in f):
            target = f["users"][0] if "users" in f else node
            self.error(target, f"{where} needs exactly one of 'audience' (a name) or 'users'"
                       " (a list).")
            return None
        if "users" in f:
            return self.inline_users(f["users"][1], where, None)
        value = f["audience"][1]
        name = self.string(value, f"{where}: audience")
        if name is None:
            return None
        if name not in audiences:
            known = f"; the file defines {quote_list(audiences)}" if audiences else (
                "; the file defines no audiences")
            self.error(value, f"{where}: unknown audience {name!r}"
                       f"{did_you_mean(name, audiences)}{known}.")
            return None
        return audiences[name]  # None when the audience itself was invalid (reported)

    def data(self, node: Node, where: str, audience: Audience | None) -> DataTemplate | None:
        if isinstance(node, Scalar) and node.is_null:
            return DataTemplate.compile({})
        if not isinstance(node, MappingNode):
            self.error(node, f"{where}: data must be a mapping (a JSON object), not"
                       f" {kind_of(node)}.")
            return None
        try:
            value = to_json(node)
        except DataError as e:
            self.error(e.node, f"{where}: data: {e.message}")
            return None
        ok = True
        for scalar in _scalars(node):
            for offset, name in placeholders(scalar.text):
                problem = self.placeholder_problem(name, audience)
                if problem:
                    single = scalar.end_line == scalar.line and scalar.style in (None, "'")
                    self.error(scalar, f"{where}: data: {problem}",
                               offset=offset if single else 0)
                    ok = False
        return DataTemplate.compile(value) if ok else None

    def placeholder_problem(self, name: str, audience: Audience | None) -> str | None:
        if name in BUILTIN_NAMES:
            return None
        if name.startswith(USER_PREFIX):
            column = name[len(USER_PREFIX):]
            if audience is None:
                return None  # the audience problem is reported on its own
            if column in (ID_COLUMN, "id"):
                return None
            if column == TZ_COLUMN:
                return None
            if column not in audience.columns:
                label = f"audience {audience.name!r}" if audience.name else "this audience"
                cols = quote_list(audience.columns) if audience.columns else "no extra fields"
                return (f"${{{name}}} names the field {column!r}, which {label} does not have"
                        f"{did_you_mean(column, audience.columns)} (it has {cols}).")
            if column in audience.gaps:
                return (f"${{{name}}} cannot be filled for user {audience.gaps[column]!r}, who"
                        f" has no {column!r} field.")
            return None
        choices = [*BUILTIN_NAMES, "user.<field>"]
        return (f"unknown placeholder ${{{name}}}{did_you_mean(name, BUILTIN_NAMES)}; known:"
                f" {', '.join(choices)}. Write $${{ for a literal ${{.")


def _scalars(node: Node) -> Iterator[Scalar]:
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue  # an alias: already checked where the anchor is
        seen.add(id(n))
        if isinstance(n, Scalar):
            yield n
        elif isinstance(n, SequenceNode):
            stack.extend(n.items)
        elif isinstance(n, MappingNode):
            for k, v in n.pairs:
                stack.append(k)
                stack.append(v)


def _shown(node: Node) -> str:
    if isinstance(node, Scalar):
        return repr(node.text) if len(node.text) <= 40 else repr(node.text[:37] + "...")
    return kind_of(node)


def database_url(text: str) -> str:
    """Check a ledger URL; ``postgresql://`` means psycopg 3. Raise ValueError (a sentence)."""
    if _plain_sqlite(text.strip()):
        return text.strip()
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see default_database
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise ValueError(f"{text!r} is not a database URL; write sqlite:///eventcron.db or"
                         " postgresql+psycopg://user@host/db.") from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return text.strip()
    if backend == "postgresql" and driver in ("psycopg", "psycopg2") and "+" not in (
            url.drivername):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "postgresql" and driver == "psycopg":
        return text.strip()
    if backend in ("sqlite", "postgresql"):
        raise ValueError(f"the {url.drivername!r} driver is not supported; use sqlite:/// or"
                         " postgresql+psycopg://.")
    raise ValueError(f"the ledger must be SQLite or PostgreSQL, not {backend!r}.")


_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def ledger_url(text: str, base: Path) -> str:
    """Check ``--database``: a URL, or a plain path meaning an SQLite file.

    A plain path (``/var/lib/eventcron/eventcron.db``, ``./x.db``, ``x.db``; ``~`` expanded)
    is made absolute against ``base``, the current folder. Raise ValueError (a sentence).
    """
    text = text.strip()
    if "://" in text:
        return database_url(text)
    if _SCHEME.match(text):
        raise ValueError(f"{text!r} is neither a database URL nor a path; write"
                         " sqlite:///eventcron.db, postgresql+psycopg://user@host/db, or a"
                         " path such as ./eventcron.db.")
    return sqlite_url(os.path.abspath(base / Path(text).expanduser()))  # symlinks as written


def _plain_sqlite(url: str) -> bool:
    # `sqlite:///path` with nothing to decode or parse: read without the database layer,
    # which `validate` then never imports. Anything else goes through SQLAlchemy's parser.
    return url.startswith("sqlite:///") and not any(c in url for c in "?%#@")


def sqlite_url(path: str) -> str:
    """Return the SQLite URL of an absolute path, quoted as SQLAlchemy renders it."""
    return "sqlite:///" + quote(path, safe=" +/")


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT``; the host defaults to loopback.

    Raises ValueError with a sentence.
    """
    value = text.strip()
    host, port = DEFAULT_HOST, value
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or not value[close + 1:].startswith(":"):
            raise ValueError(f"{text!r} is not an address; write [::1]:9108")
        host, port = value[1:close], value[close + 2:]
    elif ":" in value:
        host, port = value.rsplit(":", 1)
        host = host or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not an address; write 127.0.0.1:9108 or just 9108")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_database(base: Path) -> str:
    """Return the ledger URL used when the file names none.

    Under systemd with ``StateDirectory=``, the ledger lives there; otherwise beside the
    schedule file (``base``).
    """
    state = os.environ.get(STATE_DIRECTORY_ENV)
    if state:
        # systemd lists several directories separated by ':' when several are configured.
        return f"sqlite:///{Path(state.split(':')[0]) / 'eventcron.db'}"
    # Built here rather than parsed: a command that only validates a file never needs the
    # database layer (importing it costs more than all the rest of validation).
    return sqlite_url(str((base / DEFAULT_LEDGER_FILE).resolve()))


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to the schedule file's folder."""
    if _plain_sqlite(url):
        db = url[len("sqlite:///"):]
        if not db or db == ":memory:" or db.startswith("file:") or Path(db).is_absolute():
            return url
        return sqlite_url(str((base / db).resolve()))
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see default_database

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:") or Path(name).is_absolute():
        return url
    return parsed.set(database=str((base / name).resolve())).render_as_string(hide_password=False)
