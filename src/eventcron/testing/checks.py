"""The Inbound Events API contract as the sink enforces it, after a request is framed.

Holds the checks in the order the API applies them: path (404), method (405), media type
(415), Authorization (401), then the JSON body and the event's fields (400). Each refusal is
an ``Answer`` with a sentence that says what is wrong. Pure: no I/O, no state.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

from eventcron.testing.answers import Answer
from eventcron.testing.tokens import token_problem
from eventcron.testing.wire import BEARER_RE, Head, quote

EVENT_FIELDS: Final = ("app_user_id", "event_type", "data")


class _BadJsonError(ValueError):
    pass


def check_request(head: Head, body: bytes, *, path: str, secret: str | None,
                  reject_token: str | None) -> tuple[Answer | None, Any]:
    """Return the refusal of a framed request (None if it keeps the contract) and its body.

    The parsed body is returned either way (None if it is not JSON), for the record.
    """
    event, body_error = parse_body(body)
    if head.path != path:
        message = f"there is no endpoint here; events are posted to {path}"
        return Answer(404, message), event
    if head.method != "POST":
        message = f"method {quote(head.method)} is not allowed; use POST"
        return Answer(405, message, (("Allow", "POST"),)), event
    media_type = head.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return Answer(415, "the Content-Type must be application/json"), event
    auth_error = check_authorization(head.headers.get("authorization"), secret, reject_token)
    if auth_error is not None:
        return auth_error, event
    if body_error is None:
        body_error = check_event(event)
    if body_error is not None:
        return Answer(400, body_error), event
    return None, event


def check_authorization(value: str | None, secret: str | None,
                        reject_token: str | None) -> Answer | None:
    """Return the 401 for an Authorization header ``value``, or None if it is accepted.

    Without a ``secret`` any bearer token is accepted; ``reject_token`` is a revoked one.
    """
    challenge = (("WWW-Authenticate", "Bearer"),)
    if value is None:
        return Answer(401, "the Authorization header is missing", challenge)
    match = BEARER_RE.fullmatch(value.strip())
    if match is None:
        return Answer(401, "the Authorization header must be 'Bearer <token>'", challenge)
    token = match.group(1)
    invalid = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
    if secret is not None:
        reason = token_problem(token, secret)
        if reason is not None:
            return Answer(401, reason, invalid)
    if reject_token is not None and hmac.compare_digest(token.encode(), reject_token.encode()):
        return Answer(401, "the token has been revoked", invalid)
    return None


def parse_body(body: bytes) -> tuple[Any, str | None]:
    """Return the parsed body, or None and a sentence saying why it is not JSON."""
    if not body:
        return None, "the request body is empty; send a JSON object"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the request body is not valid UTF-8"
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants), None
    except _BadJsonError as error:
        return None, str(error)
    except json.JSONDecodeError as error:
        return None, (f"the request body is not valid JSON ({error.msg} at line {error.lineno}"
                      f" column {error.colno})")
    except RecursionError:
        return None, "the request body is nested too deeply"


def check_event(event: Any) -> str | None:
    """Return a sentence naming what is wrong with a parsed body, or None if it is valid."""
    if not isinstance(event, dict):
        return f"the request body must be a JSON object, not {_json_type(event)}"
    missing = [name for name in EVENT_FIELDS if name not in event]
    if missing:
        return f"the field {quote(missing[0])} is missing"
    extra = sorted(set(event) - set(EVENT_FIELDS))
    if extra:
        return (f"the field {quote(extra[0])} is not allowed; the body has exactly"
                " app_user_id, event_type and data")
    for name in ("app_user_id", "event_type"):
        value = event[name]
        if not isinstance(value, str):
            return f"the field {quote(name)} must be a string, not {_json_type(value)}"
        if not value:
            return f"the field {quote(name)} must not be empty"
    if not isinstance(event["data"], dict):
        return f"the field 'data' must be a JSON object, not {_json_type(event['data'])}"
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadJsonError(f"the request body has a duplicate key {quote(key)}")
            seen.add(key)
    return result


def _no_constants(name: str) -> Any:
    raise _BadJsonError(f"the request body is not valid JSON ({name} is not a JSON value)")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
