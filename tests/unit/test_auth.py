"""Loading the token: sources, claims, expiry, and never showing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.delivery.auth import (
    Token,
    TokenError,
    describe_expiry,
    load_token,
    loose_permissions,
    read_token,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = "k" * 40


def token(exp: datetime | None = None, **claims: object) -> str:
    payload: dict[str, object] = dict(claims)
    if exp is not None:
        payload["exp"] = int(exp.timestamp())
    return jwt.encode(payload, KEY, algorithm="HS256")


def test_env_file_and_credential_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = token(NOW + timedelta(days=30))
    monkeypatch.setenv("MY_TOKEN", value)
    assert read_token(TokenSource("env", "MY_TOKEN")) == value
    (tmp_path / "t").write_text(f"  Bearer {value}\n")
    assert read_token(TokenSource("file", str(tmp_path / "t"))) == value
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text(value)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_token(TokenSource("credential", "token")) == value


@pytest.mark.parametrize(("setup", "message"), [
    ("unset-env", "no token: the environment variable NOPE_TOKEN is not set."),
    ("missing-file", "does not exist"),
    ("directory", "cannot read the token"),
    ("empty", "is empty"),
    ("no-credentials", "needs $CREDENTIALS_DIRECTORY"),
    ("binary", "is not UTF-8 text"),
    ("two-words", "contains a space at position 4"),
    ("zero-width", "contains the character U+200B at position 5"),
    ("accent", "contains the character U+00F6 at position 2"),
])
def test_unusable_tokens_are_sentences_that_never_quote_the_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, message: str) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "token"
    secret_part = "s3cr3t-sign4ture"
    source = TokenSource("file", str(path))
    if setup == "unset-env":
        source = TokenSource("env", "NOPE_TOKEN")
    elif setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_text("\n")
    elif setup == "no-credentials":
        source = TokenSource("credential", "token")
        # Empty stores, whatever this host's /etc/credstore holds.
        monkeypatch.setattr(auth, "CREDSTORE_DIRS", (tmp_path / "credstore",))
        monkeypatch.setattr(auth, "CREDSTORE_ENCRYPTED_DIRS", (tmp_path / "encrypted",))
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe" + secret_part.encode())
    elif setup == "two-words":
        path.write_text(f"abc {secret_part}")
    elif setup == "zero-width":
        path.write_text(f"abcd\u200b{secret_part}")
    elif setup == "accent":
        path.write_text(f"t\u00f6{secret_part}")
    with pytest.raises(TokenError) as info:
        read_token(source)
    assert message in str(info.value)
    assert secret_part not in str(info.value)


def test_claims_and_expiry_are_read_without_verifying() -> None:
    t = load_token_value(token(NOW + timedelta(days=3), sub="app-1"))
    assert t.is_jwt and t.claims["sub"] == "app-1"
    assert t.expires_at == NOW + timedelta(days=3)
    assert not t.expired(NOW)
    assert t.expires_soon(NOW)
    assert not t.expires_soon(NOW - timedelta(days=10))
    assert t.expired(NOW + timedelta(days=3))
    assert describe_expiry(t, NOW) == "the token expires at 2026-11-29T12:00:00Z (in 3 days)"
    assert describe_expiry(t, NOW + timedelta(days=4)) == (
        "the token expired at 2026-11-29T12:00:00Z (24 hours ago)")


def test_tokens_without_exp_or_not_jwt() -> None:
    no_exp = load_token_value(token(None, sub="x"))
    assert no_exp.expires_at is None and not no_exp.expired(NOW)
    assert "does not expire" in describe_expiry(no_exp, NOW)
    opaque = load_token_value("opaque-token-value")
    assert not opaque.is_jwt
    assert "not a JWT" in describe_expiry(opaque, NOW)


def test_the_token_never_shows_in_repr_or_str() -> None:
    value = token(NOW + timedelta(days=1))
    t = load_token_value(value)
    assert value not in repr(t) and value not in str(t)


def test_loose_permissions_warn(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("x")
    path.chmod(0o600)
    assert loose_permissions(TokenSource("file", str(path))) is None
    path.chmod(0o640)
    warning = loose_permissions(TokenSource("file", str(path)))
    assert warning is not None and "chmod 600" in warning


def load_token_value(value: str) -> Token:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVENTCRON_UNIT_TOKEN", value)
        return load_token(TokenSource("env", "EVENTCRON_UNIT_TOKEN"))
