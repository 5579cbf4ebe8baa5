"""Commands that talk to the endpoint or stand in for it: send, token, sink."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from eventcron.cli.common import load
from eventcron.cli.output import EXIT_FAILURE, EXIT_OK, Failure, UsageError, out
from eventcron.cli.service import usable_token
from eventcron.clock import SystemClock, rfc3339, to_ms
from eventcron.config.audience import check_id
from eventcron.text import sentence


def cmd_send(args: argparse.Namespace) -> int:
    """Send one event now, without the ledger, and report what the endpoint said."""
    import asyncio

    from eventcron.delivery.sender import Sender

    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as e:
        raise UsageError(f"--data is not JSON: {e.msg} at character {e.pos + 1}") from None
    if not isinstance(data, dict):
        raise UsageError("--data must be a JSON object, such as '{\"plan\": \"pro\"}'")
    for value, what in ((args.user, "--user"), (args.event_type, "--event-type")):
        problem = check_id(value, what)
        if problem:
            raise UsageError(problem.rstrip("."))
    cfg = load(args)
    clock = SystemClock()
    token = usable_token(cfg.endpoint.token, clock.now())
    now = clock.now()
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"send:{args.user}:{args.event_type}:"
                                                  f"{to_ms(now)}"))

    async def go() -> int:
        sender = Sender(cfg.endpoint.url, token, timeout=cfg.endpoint.timeout, concurrency=1)
        try:
            outcome = await sender.send(event_id, args.user, args.event_type,
                                        json.dumps(data, ensure_ascii=False), now)
        finally:
            await sender.aclose()
        if outcome.kind == "delivered":
            out(f"delivered: HTTP {outcome.status_code}, event {event_id} to {args.user}.")
            return EXIT_OK
        raise Failure(f"not delivered: {outcome.error} (event {event_id}).")

    return asyncio.run(go())


def cmd_token(args: argparse.Namespace) -> int:
    """Show the token's claims (never the token) and expiry."""
    from eventcron.delivery import auth

    cfg = load(args)
    now = SystemClock().now()
    try:
        token = auth.load_token(cfg.endpoint.token)
    except auth.TokenError as e:
        raise Failure(str(e)) from None
    info = {
        "source": cfg.endpoint.token.describe(),
        "jwt": token.is_jwt,
        "claims": token.claims,
        "expires_at": rfc3339(token.expires_at) if token.expires_at else None,
        "expired": token.expired(now),
        "summary": auth.describe_expiry(token, now),
    }
    warning = auth.loose_permissions(cfg.endpoint.token)
    if args.json:
        out(json.dumps(info, indent=2, default=str))
    else:
        out(f"Token from {info['source']}:")
        for key, value in token.claims.items():
            shown = value
            if key in ("exp", "iat", "nbf") and isinstance(value, int | float):
                shown = f"{value} ({rfc3339(datetime.fromtimestamp(value, UTC))})"
            out(f"  {key}: {shown}")
        out(sentence(str(info["summary"])) + ".")
        if warning:
            out(f"Warning: {warning}.")
    return EXIT_FAILURE if token.expired(now) else EXIT_OK


def cmd_sink(args: argparse.Namespace) -> int:
    """Run the local receiver until interrupted."""
    import asyncio

    from eventcron.testing import Faults, serve

    try:
        faults = Faults(fail_rate=args.fail_rate, fail_status=args.fail_status,
                        throttle_rate=args.throttle_rate, retry_after=args.retry_after,
                        latency=args.latency, down_after=args.down_after,
                        down_for=args.down_for, down_every=args.down_every, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    record = Path(args.record) if args.record else None
    return asyncio.run(serve(host=args.host, port=args.port, path=args.path,
                             secret=args.secret, record_path=record, faults=faults))


# --- entry points --------------------------------------------------------------------------
