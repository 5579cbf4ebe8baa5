"""JSON Schema of the schedule file, for editors and as the single list of its keys.

The readers take the allowed keys of every section from here, so the schema an editor sees
and the keys the validator accepts cannot drift apart; each ``default`` and bound is taken
from :mod:`eventcron.config.model`, spelled as the file would spell it, for the same reason.
The validator remains the authority on meaning (cron syntax, time zones, cross references),
which JSON Schema cannot say. Data only: reads nothing.
"""

from __future__ import annotations

from typing import Any, Final

from eventcron.config.locate import DEFAULT_DATABASE
from eventcron.config.model import (
    CATCH_UP_MODES,
    DEFAULT_ZONE,
    MAX_ATTEMPTS,
    MAX_CAP_COUNT,
    MAX_CONCURRENCY,
    Delivery,
    Endpoint,
    QuietHours,
    Schedule,
    field_default,
)
from eventcron.config.units import DEFAULT_HOST, format_duration
from eventcron.states import SEND_SCHEDULE

SCHEMA_ID: Final = "https://eventcron.dev/schema/schedules-v1.json"

_DURATION: Final[dict[str, Any]] = {
    "description": "A duration: 30s, 5m, 1h, 2d, combinations such as 1h30m, or a number of"
                   " seconds.",
    "oneOf": [
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$"},
        {"type": "number", "minimum": 0},
    ],
}
_TIMESTAMP: Final[dict[str, Any]] = {
    "type": "string",
    "description": "An ISO 8601 date or date-time, e.g. 2026-12-01T09:00:00. Without an offset"
                   " it is wall time in the schedule's time zone.",
}


def _duration(seconds: float) -> str | int:
    """Spell a default duration as a file would: ``30s``, ``1h``, or 0 for none."""
    return format_duration(seconds) if seconds else 0


def _quiet(window: QuietHours | None) -> str | dict[str, str]:
    """Spell a default quiet window as a file would: ``none`` or ``{from, to}``."""
    if window is None:
        return NONE
    return {"from": f"{window.start:%H:%M}", "to": f"{window.end:%H:%M}"}


NONE: Final = "none"  # `quiet_hours: none`: no window
EXEMPT: Final = "exempt"  # a schedule's `limits: exempt`

_ENDPOINT: Final = Endpoint()  # the defaults of each section
_DELIVERY: Final = Delivery()

_NAME: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 1024}
_FIELD_VALUE: Final[dict[str, Any]] = {"type": ["string", "number", "boolean"]}

_USER: Final[dict[str, Any]] = {
    "description": "A user: an app_user_id, or a mapping with id, an optional timezone and any"
                   " other fields (usable in data as ${user.<field>}).",
    "oneOf": [
        _NAME,
        {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {**_NAME, "description": "The app_user_id."},
                "timezone": {"type": "string", "description": "IANA time zone of this user."},
            },
            "additionalProperties": _FIELD_VALUE,
        },
    ],
}
_USERS: Final[dict[str, Any]] = {"type": "array", "items": _USER, "minItems": 1}

_TOKEN: Final[dict[str, Any]] = {
    "description": "Where the API token (a JWT) comes from: exactly one of env, file, credential.",
    "type": "object",
    "properties": {
        "env": {"type": "string", "description": "Environment variable holding the token."},
        "file": {"type": "string", "description": "File holding the token (relative to this"
                                                  " file)."},
        "credential": {"type": "string", "description": "systemd credential name, read from"
                                                        " $CREDENTIALS_DIRECTORY."},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}

ENDPOINT: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Where and how events are sent.",
    "properties": {
        "url": {"type": "string", "format": "uri",
                "default": _ENDPOINT.url,
                "description": "The Inbound Events API URL."},
        "token": _TOKEN,
        "timeout": {**_DURATION, "default": _duration(_ENDPOINT.timeout),
                    "description": "Time allowed for one request, connect to last byte."},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY,
                        "default": _ENDPOINT.concurrency,
                        "description": "Requests in flight at most."},
        "rate_limit": {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*(s|m|h)\s*$",
                       "description": "Requests per second, minute or hour for the whole"
                                      " endpoint: 200/s, 600/m, 10000/h."},
        "ca_bundle": {"type": "string",
                      "description": "PEM file of CA certificates to trust instead of the"
                                     " system's (relative to this file). Verification stays"
                                     " on."},
        "allow_insecure_http": {"type": "boolean", "default": _ENDPOINT.allow_insecure_http,
                                "description": "Allow a plain http:// URL to a host other than"
                                               " loopback."},
    },
    "additionalProperties": False,
}

_CLOCK: Final[dict[str, Any]] = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}

QUIET_WINDOW: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A daily window of the recipient's local time (their own timezone where"
                   " known, else the schedule's) in which nothing is sent: events wait for"
                   " its end, and expire if that is past delivery.expires_after. from later"
                   " than to crosses midnight.",
    "properties": {
        "from": {**_CLOCK, "description": "Start of the window, HH:MM (included)."},
        "to": {**_CLOCK, "description": "End of the window, HH:MM (excluded); not equal to"
                                        " from."},
    },
    "required": ["from", "to"],
    "additionalProperties": False,
}


def _quiet_hours(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "oneOf": [{"const": NONE}, QUIET_WINDOW], **extra}


DELIVERY: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Retries, expiry and catch-up.",
    "properties": {
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS,
                         "default": _DELIVERY.max_attempts,
                         "description": "Attempts per event before it is marked failed."},
        "initial_backoff": {**_DURATION, "default": _duration(_DELIVERY.initial_backoff),
                            "description": "Backoff before the first retry; doubles each time,"
                                           " with full jitter."},
        "max_backoff": {**_DURATION, "default": _duration(_DELIVERY.max_backoff),
                        "description": "Longest wait between attempts."},
        "expires_after": {**_DURATION, "default": _duration(_DELIVERY.expires_after),
                          "description": "Never deliver later than this after the nominal"
                                         " time."},
        "catch_up": {**_DURATION, "default": _duration(_DELIVERY.catch_up),
                     "description": "After downtime, fire missed occurrences this recent."},
        "catch_up_mode": {"enum": list(CATCH_UP_MODES), "default": _DELIVERY.catch_up_mode,
                          "description": "Which missed occurrences to fire after downtime."},
        "claim_lease": {**_DURATION, "default": _duration(_DELIVERY.claim_lease),
                        "description": "How long an instance's claim on an event outlives the"
                                       " instance: a dead instance's events are taken over"
                                       " after this; database outages shorter than this"
                                       " never cause a second send."},
        "retention": {**_DURATION, "default": _duration(_DELIVERY.retention),
                      "description": "Delete delivered, failed, expired, cancelled and"
                                     " suppressed rows this long after their last change;"
                                     " pending rows are kept."},
        "quiet_hours": _quiet_hours("Quiet hours of every schedule that names none of its"
                                    ' own: {from: "21:00", to: "08:00"}, or none.',
                                    default=_quiet(_DELIVERY.quiet_hours)),
    },
    "additionalProperties": False,
}

SKIP: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Local dates (the recipient's zone) on which the schedule sends nothing.",
    "properties": {
        "dates": {"type": "array",
                  "items": {"type": "string",
                            "pattern": r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}"
                                       r"(\s*\.\.\s*[0-9]{4}-[0-9]{2}-[0-9]{2})?\s*$"},
                  "description": "Dates (2026-12-24) and inclusive ranges"
                                 " (2026-12-31..2027-01-01, at most 366 days each)."},
        "holidays": {"type": "string",
                     "pattern": r"^\s*([A-Z]{2}(-.+)?|user\.[A-Za-z_][A-Za-z0-9_]*)\s*$",
                     "description": "Public holidays of a region: an ISO 3166 country code,"
                                    " optionally with a subdivision (DE, DE-BY); or"
                                    " user.<column> for each user's own region, from a column"
                                    " of the audience (empty: no holidays)."},
    },
    "additionalProperties": False,
}

SUPPRESS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "The opt-out list: users in it are never sent anything.",
    "properties": {
        "file": {"type": "string",
                 "description": "CSV with a header naming an app_user_id column (other"
                                " columns are ignored). Relative to this file; reloaded when"
                                " it changes."},
    },
    "required": ["file"],
    "additionalProperties": False,
}

LIMITS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Frequency caps across all schedules.",
    "properties": {
        "per_user": {"type": "string", "pattern": r"^\s*[0-9]+\s*/\s*(h|day|week)\s*$",
                     "description": "At most N events per user per hour, day or week of the"
                                    " recipient's zone (weeks start on Monday): 1/day, 3/week,"
                                    f" 2/h; N from 1 to {MAX_CAP_COUNT:,}. Events over the"
                                    " cap end suppressed. Absent: no cap."},
    },
    "additionalProperties": False,
}

AUDIENCE: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A named list of users: inline (users) or a CSV file (file).",
    "properties": {
        "users": _USERS,
        "file": {"type": "string",
                 "description": "CSV with a header: app_user_id[,timezone][,other columns]."
                                " Relative to this file."},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}

SCHEDULE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "event_type"],
    "properties": {
        "id": {**_NAME, "not": {"const": SEND_SCHEDULE},
               "description": "Unique and stable: it is part of the dedup key. '-' is"
                              " reserved for the events of `eventcron send`."},
        "description": {"type": "string"},
        "event_type": {**_NAME, "description": "The event_type sent, e.g. reminder:checkin."},
        "cron": {"type": "string", "description": "crontab(5) expression or @macro."},
        "every": {**_DURATION, "description": "Fixed real-time interval, phase anchored at"
                                              " starts (or the Unix epoch)."},
        "at": {**_TIMESTAMP, "description": "One-off time."},
        "timezone": {"type": "string", "default": DEFAULT_ZONE,
                     "description": "IANA time zone, or `user` for each user's own zone."},
        "audience": {"type": "string", "description": "Name of an audience."},
        "users": _USERS,
        "data": {"type": "object",
                 "description": "JSON object sent as data. Placeholders: ${scheduled_for},"
                                " ${scheduled_for_local}, ${schedule_id}, ${event_type},"
                                " ${app_user_id}, ${user.<field>}; $${ is a literal ${."},
        "jitter": {**_DURATION, "default": _duration(field_default(Schedule, "jitter")),
                   "description": "Deterministic per-user delay in [0, jitter)."},
        "starts": {**_TIMESTAMP, "description": "No fires before this time."},
        "ends": {**_TIMESTAMP, "description": "No fires after this time."},
        "enabled": {"type": "boolean", "default": field_default(Schedule, "enabled")},
        "quiet_hours": _quiet_hours('This schedule\'s quiet hours: {from: "21:00", to:'
                                    ' "08:00"}, or none for none at all. Absent:'
                                    " delivery.quiet_hours."),
        "skip": SKIP,
        "limits": {"const": EXEMPT,
                   "description": "exempt: this schedule's events are neither counted"
                                  " against limits.per_user nor capped by it"
                                  " (transactional messages)."},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["cron"]}, {"required": ["every"]}, {"required": ["at"]}],
}

METRICS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Prometheus metrics (/metrics) and health (/healthz); off unless set.",
    "properties": {
        "listen": {"type": ["string", "integer"],
                   "description": "Address to listen on: 9108, 127.0.0.1:9108 or [::1]:9108."
                                  f" The host defaults to {DEFAULT_HOST}."},
    },
    "additionalProperties": False,
}

TOP: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "eventcron schedule file",
    "type": "object",
    "required": ["version", "schedules"],
    "properties": {
        "version": {"const": 1, "description": "Format version; must be 1."},
        "endpoint": ENDPOINT,
        "delivery": DELIVERY,
        "suppress": SUPPRESS,
        "limits": LIMITS,
        "database": {"type": "string", "default": DEFAULT_DATABASE,
                     "description": "SQLAlchemy URL of the ledger; relative SQLite paths are"
                                    " relative to this file."},
        "audiences": {"type": "object", "additionalProperties": AUDIENCE,
                      "description": "Named audiences."},
        "schedules": {"type": "array", "items": SCHEDULE},
        "metrics": METRICS,
    },
    "additionalProperties": False,
}


def keys(section: dict[str, Any]) -> tuple[str, ...]:
    """Return the keys a section of the schema allows, in schema order."""
    return tuple(section["properties"])


def schema() -> dict[str, Any]:
    """Return the JSON Schema of the schedule file."""
    return TOP
