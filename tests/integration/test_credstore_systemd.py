"""A token encrypted with the real systemd-creds, found in an encrypted credential store
and decrypted by it, as an operator's `eventcron token` at a root shell does.

Skipped where systemd-creds is not installed or cannot encrypt here (it needs the host key,
/var/lib/systemd/credential.secret, which only root may create or read).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.testing import make_token

PROGRAM = shutil.which("systemd-creds")


def encrypt(name: str, secret: str, target: Path) -> None:
    """Encrypt ``secret`` as credential ``name`` into ``target`` with systemd-creds."""
    assert PROGRAM is not None
    result = subprocess.run([PROGRAM, "encrypt", f"--name={name}", "-", str(target)],
                            input=secret, capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        pytest.skip(f"systemd-creds cannot encrypt here: {result.stderr.strip()}")


@pytest.mark.skipif(PROGRAM is None, reason="systemd-creds is not installed")
def test_a_token_in_the_encrypted_store_is_decrypted_by_systemd_creds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.CREDENTIALS_ENV, raising=False)  # not inside a service
    plain, encrypted = tmp_path / "credstore", tmp_path / "credstore.encrypted"
    plain.mkdir()
    encrypted.mkdir()
    monkeypatch.setattr(auth, "CREDSTORE_DIRS", (plain,))
    monkeypatch.setattr(auth, "CREDSTORE_ENCRYPTED_DIRS", (encrypted,))
    token = make_token("x" * 32, expires_in=3600, now=time.time())
    encrypt("eventcron.token", token, encrypted / "eventcron.token")
    assert token.encode() not in (encrypted / "eventcron.token").read_bytes()

    source = TokenSource("credential", "eventcron.token")
    assert auth.read_token(source) == token
    loaded = auth.load_token(source)
    assert loaded.is_jwt and loaded.expires_at is not None

    # systemd-creds checks the name it was encrypted under: a file renamed is refused,
    # and the error says where it looked, without the token.
    (encrypted / "eventcron.token").rename(encrypted / "other")
    encrypt("eventcron.token", token, encrypted / "other.token")
    with pytest.raises(auth.TokenError) as info:
        auth.read_token(TokenSource("credential", "other.token"))
    assert str(encrypted / "other.token") in str(info.value)
    assert token not in str(info.value)
