"""Commands that talk to the endpoint or stand in for it: send, token, sink."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from eventcron.cli.common import database_url, load
from eventcron.cli.output import EXIT_FAILURE, EXIT_OK, Failure, UsageError, out
from eventcron.cli.service import usable_token
from eventcron.clock import SystemClock, rfc3339, to_ms
from eventcron.config.audience import check_id
from eventcron.text import sentence

if TYPE_CHECKING:
    from eventcron.config import Config
    from eventcron.delivery.auth import Token
    from eventcron.delivery.retry import Outcome


def cmd_send(args: argparse.Namespace) -> int:
    """Send one event now, record it in the ledger, and report what the endpoint said.

    The ledger is the one the daemon and ``status`` use (``--database``,
    ``$EVENTCRON_DATABASE_URL``, the file's ``database``, the default); it must exist. The
    event is recorded under schedule ``-`` before it goes out, in a state
    the daemon never sends, and its outcome after: a ledger that cannot take the record
    stops the send, so nothing is sent unrecorded. Exit 1 when it is not delivered, or its
    outcome could not be recorded.
    """
    import asyncio

    from eventcron.cli.history import SENT_BY_HAND, by_hand_identity
    from eventcron.ledger import Ledger, LedgerError, display_url, send_event_id

    data = _json_object(args.data)
    for value, what in ((args.user, "--user"), (args.event_type, "--event-type")):
        problem = check_id(value, what) or _not_utf8(value, what)
        if problem:
            raise UsageError(problem.rstrip("."))
    cfg = load(args)
    now = SystemClock().now()  # read once: the event's time, its id and its record
    token = usable_token(cfg.endpoint.token, now, refused=("nothing was sent", EXIT_FAILURE))
    at = to_ms(now)
    data_json = json.dumps(data, ensure_ascii=False)
    event_id = send_event_id(args.user, args.event_type, at, data)
    unsent = (" Nothing was sent: eventcron send records each event first, in the ledger"
              " `eventcron run` creates and uses.")
    try:
        # Not created: a ledger missing where the command looks is the wrong one (an
        # operator's shell finds the file's folder, the service its state directory).
        ledger = Ledger.open(database_url(args, cfg), create=False)
    except LedgerError as e:
        raise Failure(f"{e}{unsent}") from None
    try:
        try:
            row_id = ledger.begin_send(event_id, args.user, args.event_type, data_json, at,
                                       instance=by_hand_identity(SENT_BY_HAND))
        except LedgerError as e:
            raise Failure(f"{e}{unsent}") from None
        outcome = asyncio.run(_send_one(cfg, token, event_id=event_id, user=args.user,
                                        event_type=args.event_type, data_json=data_json,
                                        now=now))
        delivered = outcome.kind == "delivered"
        said = (f"delivered: HTTP {outcome.status_code}, event {event_id} to {args.user}"
                if delivered else f"not delivered: {outcome.error} (event {event_id})")
        try:  # the answer's own time: history measures delivery from the send's
            ledger.finish_send(row_id, "delivered" if delivered else "failed",
                               outcome.status_code, outcome.error, to_ms(SystemClock().now()))
        except LedgerError as e:
            raise Failure(f"{said}; but recording its outcome failed: {e} The ledger does"
                          " not have the endpoint's answer.") from None
        where = display_url(ledger.url)
    finally:
        ledger.close()
    if delivered:
        out(f"{said}; recorded in the ledger {where}.")
        return EXIT_OK
    raise Failure(f"{said}; recorded as failed in the ledger {where}.")


def _json_object(text: str) -> dict[str, object]:
    """Parse ``--data``: a JSON object of strict JSON (no NaN or Infinity), UTF-8 throughout."""
    def refuse(constant: str) -> None:
        raise UsageError(f"--data holds {constant}, which JSON does not allow; use null or a"
                         " number")

    try:
        data = json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as e:
        raise UsageError(f"--data is not JSON: {e.msg} at character {e.pos + 1}") from None
    if not isinstance(data, dict):
        raise UsageError("--data must be a JSON object, such as '{\"plan\": \"pro\"}'")
    if _not_utf8(json.dumps(data, ensure_ascii=False), "--data"):
        raise UsageError("--data holds a lone surrogate (such as \\ud800), which is not valid"
                         " UTF-8")
    return data


def _not_utf8(text: str, what: str) -> str | None:
    # A lone surrogate (from "\ud800" or undecodable bytes in argv) cannot be sent or stored.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"{what} holds a character that is not valid UTF-8 at character {e.start + 1}"
    return None


async def _send_one(cfg: Config, token: Token, *, event_id: str, user: str, event_type: str,
                    data_json: str, now: datetime) -> Outcome:
    """Send one event to the file's endpoint, once; return the endpoint's answer."""
    from eventcron.delivery.sender import Sender

    sender = Sender(cfg.endpoint.url, token, timeout=cfg.endpoint.timeout, concurrency=1)
    try:
        return await sender.send(event_id, user, event_type, data_json, now)
    finally:
        await sender.aclose()


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
