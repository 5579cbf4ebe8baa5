"""The API token: loading it (env, file, systemd credential) and reading its expiry.

eventcron never has the token's secret; it reads the JWT's claims without verifying them,
only to know when the token expires. The token itself never appears in any message:
:class:`Token` does not show it in ``repr`` or ``str``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt

from eventcron.clock import rfc3339
from eventcron.config import TokenSource
from eventcron.text import count

CREDENTIALS_ENV: Final = "CREDENTIALS_DIRECTORY"  # set by systemd for LoadCredential=
# Outside a service, systemd's credential stores, searched in this order (systemd.exec(5)).
CREDSTORE_DIRS: tuple[Path, ...] = (Path("/etc/credstore"), Path("/run/credstore"))
CREDSTORE_ENCRYPTED_DIRS: tuple[Path, ...] = (Path("/etc/credstore.encrypted"),
                                              Path("/run/credstore.encrypted"))
SYSTEMD_CREDS: Final = "systemd-creds"  # decrypts the encrypted stores' files
DECRYPT_TIMEOUT: Final = 30.0  # seconds: a TPM may be slow, a hung one must not hang us
WARN_BEFORE: Final = timedelta(days=7)  # warn this long before the token expires
MAX_TOKEN_BYTES: Final = 64 * 1024  # bytes: a token file larger than this is not a token


class TokenError(Exception):
    """The token is missing, unreadable or unusable; the message says which and where."""


@dataclass(frozen=True, slots=True)
class Token:
    """A loaded token and what its claims say. ``value`` is never printed."""

    value: str = field(repr=False)
    source: TokenSource
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    expires_at: datetime | None = None  # from the exp claim; None when absent
    is_jwt: bool = True

    def __str__(self) -> str:
        return f"token from {self.source.describe()}"

    def expired(self, now: datetime) -> bool:
        """Tell whether the exp claim is at or before ``now``."""
        return self.expires_at is not None and self.expires_at <= now

    def expires_soon(self, now: datetime, within: timedelta = WARN_BEFORE) -> bool:
        """Tell whether the token expires within ``within`` of ``now`` (not yet expired)."""
        return (self.expires_at is not None and not self.expired(now)
                and self.expires_at - now <= within)


def read_token(source: TokenSource) -> str:
    """Read the raw token from its source; raise :class:`TokenError` with a sentence."""
    if source.kind == "env":
        value = os.environ.get(source.value)
        if value is None:
            raise TokenError(f"no token: {source.describe()} is not set.")
        where = source.describe()
    else:
        if source.kind == "credential":
            directory = os.environ.get(CREDENTIALS_ENV)
            if not directory:
                # An operator's shell: find the credential where systemd would.
                value, where = read_credstore(source)
                return _clean(value, where)
            path = Path(directory) / source.value
        else:
            path = Path(source.value)
        where = f"{source.describe()} ({path})" if source.kind == "credential" else (
            source.describe())
        value = _read_file(path, where)
    return _clean(value, where)


def _clean(value: str, where: str) -> str:
    """Strip the token read from ``where`` and check it is one line of printable ASCII."""
    value = value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    if not value:
        raise TokenError(f"no token: {where} is empty.")
    for position, char in enumerate(value, 1):
        if not "!" <= char <= "~":
            # Name the character and where it is, never the token around it.
            what = "a space" if char.isspace() else f"the character U+{ord(char):04X}"
            raise TokenError(f"the token in {where} contains {what} at position {position};"
                             " a token is one line of printable ASCII (a JWT is base64url"
                             " and dots).")
    return value


def read_credstore(source: TokenSource, *, plain: Sequence[Path] | None = None,
                   encrypted: Sequence[Path] | None = None,
                   systemd_creds: str | None = None) -> tuple[str, str]:
    """Find credential ``source.value`` in systemd's credential stores, outside a service.

    Looks in ``plain`` (default :data:`CREDSTORE_DIRS`), then in ``encrypted`` (default
    :data:`CREDSTORE_ENCRYPTED_DIRS`) through ``systemd-creds decrypt`` when that program
    is found. Returns the text and where it came from; raises :class:`TokenError` naming
    every place looked when none holds it.
    """
    name = source.value
    plain_dirs = CREDSTORE_DIRS if plain is None else tuple(plain)
    encrypted_dirs = CREDSTORE_ENCRYPTED_DIRS if encrypted is None else tuple(encrypted)
    for directory in plain_dirs:
        path = directory / name
        if path.is_file():
            where = f"{source.describe()} ({path})"
            return _read_file(path, where), where
    program = systemd_creds if systemd_creds is not None else shutil.which(SYSTEMD_CREDS)
    looked = [str(d / name) for d in plain_dirs]
    for directory in encrypted_dirs:
        path = directory / name
        looked.append(str(path))
        if program is not None and path.is_file():
            where = f"{source.describe()} ({path})"
            return _decrypt(program, name, path, where), where
    skipped = "" if program is not None or not encrypted_dirs else (
        f"; {SYSTEMD_CREDS} is not installed, so encrypted credentials were not read")
    raise TokenError(f"no token: {source.describe()} needs ${CREDENTIALS_ENV}, which systemd"
                     " sets inside the service (it is not set here), or a file in systemd's"
                     f" credential stores; none of {', '.join(looked)} exists{skipped}.")


def _read_file(path: Path, where: str) -> str:
    """Read a token file of at most :data:`MAX_TOKEN_BYTES` as UTF-8."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise TokenError(f"no token: {where} does not exist.") from None
    except OSError as e:
        raise TokenError(f"cannot read the token from {where}: {e.strerror}.") from None
    return _decode(raw, where)


def _decode(raw: bytes, where: str) -> str:
    if len(raw) > MAX_TOKEN_BYTES:
        raise TokenError(f"{where} is larger than {MAX_TOKEN_BYTES // 1024} KiB; it does"
                         " not look like a token.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError(f"{where} is not UTF-8 text; it does not look like a token.") from None


def _decrypt(program: str, name: str, path: Path, where: str) -> str:
    """Decrypt an encrypted credential with ``systemd-creds``; its stderr explains failures."""
    try:
        # The program is systemd-creds (found on PATH or given by the caller), no shell.
        argv = [program, "decrypt", f"--name={name}", str(path), "-"]
        done = subprocess.run(argv, capture_output=True,  # noqa: S603
                              timeout=DECRYPT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        why = "it did not finish in time" if isinstance(e, subprocess.TimeoutExpired) else (
            e.strerror or str(e))
        raise TokenError(f"cannot decrypt {where} with {program}: {why}.") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = detail[-1].rstrip(".") if detail else f"exit status {done.returncode}"
        raise TokenError(f"cannot decrypt {where} with {program}: {why}.")
    return _decode(done.stdout, where)


def load_token(source: TokenSource) -> Token:
    """Read a token and its claims (unverified: eventcron has no secret to verify with)."""
    value = read_token(source)
    try:
        claims = jwt.decode(value, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return Token(value, source, {}, None, is_jwt=False)
    expires_at: datetime | None = None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            expires_at = None
    return Token(value, source, claims, expires_at)


def loose_permissions(source: TokenSource) -> str | None:
    """Return a warning when a token file can be read by group or others, else None."""
    if source.kind != "file":
        return None
    try:
        mode = Path(source.value).stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"the token file {source.value} can be read by other users (mode"
                f" {stat.S_IMODE(mode):o}); run: chmod 600 {source.value}")
    return None


def describe_expiry(token: Token, now: datetime) -> str:
    """Say when the token expires, relative to ``now``, for logs and ``eventcron token``."""
    if not token.is_jwt:
        return "the token is not a JWT, so its expiry is unknown"
    if token.expires_at is None:
        return "the token has no exp claim; it does not expire"
    when = rfc3339(token.expires_at)
    delta = token.expires_at - now
    if delta.total_seconds() <= 0:
        return f"the token expired at {when} ({_span(-delta)} ago)"
    return f"the token expires at {when} (in {_span(delta)})"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return count(seconds // 86400, "day")
    if seconds >= 2 * 3600:
        return count(seconds // 3600, "hour")
    if seconds >= 120:
        return count(seconds // 60, "minute")
    return count(seconds, "second")
