"""HS256 bearer tokens for the sink: making them for clients and judging the ones it receives.

Holds the one rule for secrets (at least 32 bytes), ``make_token`` for tests, the demo and
the benchmarks, and the sentence that says why a received token is refused. Touches only
PyJWT; the time is passed in.
"""

from __future__ import annotations

from typing import Any, Final

import jwt

MIN_SECRET_BYTES: Final = 32  # bytes; RFC 7518 §3.2: an HS256 key is at least the hash size


def check_secret(secret: str) -> None:
    """Raise ``ValueError`` if ``secret`` is too short to be an HS256 key."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long")


def make_token(secret: str, *, expires_in: float = 3600.0, now: float,
               claims: dict[str, Any] | None = None) -> str:
    """Return an HS256 JWT with ``iat`` = now and ``exp`` = now + expires_in (epoch seconds).

    ``claims`` are added to (and may override) ``iat`` and ``exp``; a negative
    ``expires_in`` makes an already expired token.
    """
    check_secret(secret)
    payload: dict[str, Any] = {"iat": int(now), "exp": int(now + expires_in)}
    payload.update(claims or {})
    return jwt.encode(payload, secret, algorithm="HS256")


def token_problem(token: str, secret: str) -> str | None:
    """Return why ``token`` is not acceptable (never quoting it), or None."""
    try:
        jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.ExpiredSignatureError:
        return "the token has expired"
    except jwt.InvalidSignatureError:
        return "the token has a bad signature"
    except jwt.InvalidAlgorithmError:
        return "the token is not signed with HS256"
    except jwt.ImmatureSignatureError:
        return "the token is not valid yet"
    except jwt.DecodeError:
        return "the token is malformed"
    except jwt.InvalidTokenError:
        return "the token has invalid claims"
    return None
