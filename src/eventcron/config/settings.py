"""The settings sections of the schedule file: endpoint, delivery, database and metrics.

Each function reads one section with a :class:`~eventcron.config.fields.FieldReader`,
returns its model object (keys left out take the model's defaults) or None after recording
its problems. Reads a CA bundle's first bytes to check it; nothing else outside the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from eventcron.config import rules, schema
from eventcron.config.fields import FieldReader
from eventcron.config.locate import database_url, resolve_sqlite
from eventcron.config.model import (
    CATCH_UP_MODES,
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    CatchUpMode,
    Delivery,
    Endpoint,
    TokenSource,
)
from eventcron.config.units import format_duration, is_loopback, parse_listen, parse_rate
from eventcron.config.yamlsource import Node
from eventcron.problems import did_you_mean, quote_list


def endpoint(r: FieldReader, node: Node) -> Endpoint | None:
    """Read the ``endpoint`` section: where events go and how hard to push."""
    f = r.mapping(node, schema.ENDPOINT, "endpoint")
    if f is None:
        return None
    d = Endpoint()
    url = _url(r, f["url"][1]) if "url" in f else d.url
    token = _token(r, f["token"][1]) if "token" in f else d.token
    timeout = (r.duration(f["timeout"][1], "endpoint.timeout", minimum=0.001)
               if "timeout" in f else d.timeout)
    concurrency = (r.integer(f["concurrency"][1], "endpoint.concurrency", 1, MAX_CONCURRENCY)
                   if "concurrency" in f else d.concurrency)
    rate = _rate(r, f["rate_limit"][1]) if "rate_limit" in f else d.rate_limit
    insecure = (r.boolean(f["allow_insecure_http"][1], "endpoint.allow_insecure_http")
                if "allow_insecure_http" in f else d.allow_insecure_http)
    bundle = _ca_bundle(r, f["ca_bundle"][1]) if "ca_bundle" in f else d.ca_bundle
    if url is not None and insecure is not None and not insecure:
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            r.error(f["url"][1], f"endpoint.url: plain http:// sends the token"
                    f" unencrypted to {parts.hostname}; use https://, or set"
                    " endpoint.allow_insecure_http: true if you must.")
            return None
    if (url is None or token is None or timeout is None or concurrency is None
            or insecure is None or ("ca_bundle" in f and bundle is None)):
        return None
    return Endpoint(url, token, timeout, concurrency, rate, bundle, insecure)


def _ca_bundle(r: FieldReader, node: Node) -> str | None:
    text = r.string(node, "endpoint.ca_bundle")
    if text is None:
        return None
    path = Path(text) if Path(text).is_absolute() else (r.base / text).resolve()
    try:
        with path.open("rb") as f:
            head = f.read(64 * 1024)
    except OSError as e:
        r.error(node, f"endpoint.ca_bundle: cannot read {path}: {e.strerror}.")
        return None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        r.error(node, f"endpoint.ca_bundle: {path} holds no PEM certificate.")
        return None
    return str(path)


def _url(r: FieldReader, node: Node) -> str | None:
    text = r.string(node, "endpoint.url")
    if text is None:
        return None
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.error(node, f"endpoint.url must be an http:// or https:// URL, not {text!r}.")
        return None
    if parts.username or parts.password:
        r.error(node, "endpoint.url must not carry credentials; put the token under"
                " endpoint.token.")
        return None
    return text.strip()


def _token(r: FieldReader, node: Node) -> TokenSource | None:
    f = r.mapping(node, schema.ENDPOINT["properties"]["token"], "endpoint.token")
    if f is None:
        return None
    if len(f) != 1:
        r.error(node, "endpoint.token needs exactly one of 'env', 'file' or"
                f" 'credential', not {len(f)}.")
        return None
    (kind, (_, value)), = f.items()
    text = r.string(value, f"endpoint.token.{kind}")
    if text is None:
        return None
    if kind == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        r.error(value, f"endpoint.token.env must be an environment variable name, not"
                f" {text!r}.")
        return None
    if kind == "credential" and ("/" in text or text in (".", "..")):
        r.error(value, f"endpoint.token.credential must be a credential name without"
                f" '/', not {text!r}.")
        return None
    if kind == "file":
        text = str((r.base / text).resolve()) if not Path(text).is_absolute() else text
    assert kind in ("env", "file", "credential")
    return TokenSource(kind, text)  # type: ignore[arg-type]


def _rate(r: FieldReader, node: Node) -> float | None:
    text = r.string(node, "endpoint.rate_limit")
    if text is None:
        return None
    rate = parse_rate(text)
    if rate is None:
        r.error(node, f"endpoint.rate_limit must look like 200/s, 600/m or 10000/h, not"
                f" {text!r}.")
    return rate


def delivery(r: FieldReader, node: Node) -> Delivery | None:
    """Read the ``delivery`` section: retries, expiry, catch-up, retention and claims."""
    f = r.mapping(node, schema.DELIVERY, "delivery")
    if f is None:
        return None
    d = Delivery()

    def dur(key: str, default: float, minimum: float = 0.0) -> float | None:
        if key not in f:
            return default
        return r.duration(f[key][1], f"delivery.{key}", minimum=minimum)

    attempts = (r.integer(f["max_attempts"][1], "delivery.max_attempts", 1, MAX_ATTEMPTS)
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
        mode = r.string(node_mode, "delivery.catch_up_mode")
        if mode is not None and mode not in CATCH_UP_MODES:
            r.error(node_mode, f"delivery.catch_up_mode must be {quote_list(CATCH_UP_MODES)},"
                    f" not {mode!r}{did_you_mean(mode, CATCH_UP_MODES)}.")
            mode = None
    if initial is not None and maximum is not None and maximum < initial:
        r.error(f["max_backoff"][1] if "max_backoff" in f else f["initial_backoff"][1],
                f"delivery.max_backoff ({format_duration(maximum)}) is shorter than"
                f" delivery.initial_backoff ({format_duration(initial)}).")
        return None
    quiet_ok, quiet = (rules.quiet_hours(r, f["quiet_hours"][1], "delivery.quiet_hours")
                       if "quiet_hours" in f else (True, d.quiet_hours))
    if (attempts is None or initial is None or maximum is None or expires is None
            or catch_up is None or mode is None or retention is None or lease is None
            or not quiet_ok):
        return None
    checked: CatchUpMode = mode  # type: ignore[assignment]  # one of CATCH_UP_MODES, checked
    return Delivery(attempts, initial, maximum, expires, catch_up, checked, retention, lease,
                    quiet)


def database(r: FieldReader, node: Node) -> str | None:
    """Read ``database``: a ledger URL, a relative SQLite path made relative to the file."""
    url = r.parsed(node, "database", database_url)
    return resolve_sqlite(url, r.base) if url is not None else None


def metrics(r: FieldReader, node: Node) -> tuple[str, int] | None:
    """Read the ``metrics`` section: the address to listen on, or None for no metrics."""
    f = r.mapping(node, schema.METRICS, "metrics")
    if not f or "listen" not in f:
        return None
    return r.parsed(f["listen"][1], "metrics.listen", parse_listen)
