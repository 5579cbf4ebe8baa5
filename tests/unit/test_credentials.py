"""A ``{credential: NAME}`` token outside a service: systemd's credential stores."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from eventcron.config import TokenSource
from eventcron.delivery import auth
from eventcron.delivery.auth import TokenError, read_credstore, read_token

SOURCE = TokenSource("credential", "token")


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Four empty credential stores in tmp_path, in systemd's order; no service around us."""
    monkeypatch.delenv(auth.CREDENTIALS_ENV, raising=False)
    dirs = {name: tmp_path / name for name in ("etc", "run", "etc.enc", "run.enc")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setattr(auth, "CREDSTORE_DIRS", (dirs["etc"], dirs["run"]))
    monkeypatch.setattr(auth, "CREDSTORE_ENCRYPTED_DIRS", (dirs["etc.enc"], dirs["run.enc"]))
    return dirs


def fake_systemd_creds(tmp_path: Path, body: str) -> Path:
    """A stand-in for systemd-creds: a shell script that records its arguments."""
    script = tmp_path / "systemd-creds"
    script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_plain_store_is_read_when_no_credentials_directory(stores: dict[str, Path]) -> None:
    (stores["run"] / "token").write_text("from-run\n")
    assert read_token(SOURCE) == "from-run"
    (stores["etc"] / "token").write_text("Bearer from-etc\n")
    assert read_token(SOURCE) == "from-etc"  # /etc/credstore comes first


def test_credentials_directory_still_wins(stores: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (stores["etc"] / "token").write_text("from-store")
    service = tmp_path / "service"
    service.mkdir()
    (service / "token").write_text("from-service")
    monkeypatch.setenv(auth.CREDENTIALS_ENV, str(service))
    assert read_token(SOURCE) == "from-service"


def test_encrypted_store_is_decrypted_with_systemd_creds(stores: dict[str, Path],
                                                         tmp_path: Path) -> None:
    (stores["run.enc"] / "token").write_bytes(b"ciphertext")
    program = fake_systemd_creds(tmp_path, "echo decrypted-token")
    value, where = read_credstore(SOURCE, systemd_creds=str(program))
    assert value.strip() == "decrypted-token"
    assert str(stores["run.enc"] / "token") in where
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["decrypt", "--name=token", str(stores["run.enc"] / "token"), "-"]


def test_failed_decryption_is_a_sentence(stores: dict[str, Path], tmp_path: Path) -> None:
    (stores["etc.enc"] / "token").write_bytes(b"ciphertext")
    program = fake_systemd_creds(tmp_path, "echo 'Failed to decrypt: bad key.' >&2; exit 1")
    with pytest.raises(TokenError) as info:
        read_credstore(SOURCE, systemd_creds=str(program))
    where = stores["etc.enc"] / "token"
    assert str(info.value) == (f"cannot decrypt the systemd credential 'token' ({where})"
                               f" with {program}: Failed to decrypt: bad key.")


def test_nothing_found_names_every_place_looked(stores: dict[str, Path]) -> None:
    with pytest.raises(TokenError) as info:
        read_token(SOURCE)
    message = str(info.value)
    assert "$CREDENTIALS_DIRECTORY" in message
    for d in stores.values():
        assert str(d / "token") in message


def test_encrypted_store_skipped_without_systemd_creds(stores: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (stores["etc.enc"] / "token").write_bytes(b"ciphertext")
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(TokenError) as info:
        read_token(SOURCE)
    assert "systemd-creds is not installed" in str(info.value)


def test_parameters_override_the_module_dirs(tmp_path: Path) -> None:
    store = tmp_path / "mine"
    store.mkdir()
    (store / "token").write_text("param")
    assert read_credstore(SOURCE, plain=[store], encrypted=[])[0] == "param"
