"""Security defaults: TLS verification with a custom CA, http:// only to loopback."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventcron.config import TokenSource
from eventcron.delivery.auth import Token
from eventcron.delivery.sender import Sender

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command to make certificates")


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=eventcron test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=localhost")
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


async def https_server(cert: Path, key: Path) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


def test_a_custom_ca_bundle_is_trusted_and_verification_stays_on(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    token = Token("t.t.t", TokenSource("env", "X"))

    async def scenario() -> tuple[str, str | None]:
        server = await https_server(cert, key)
        port = server.sockets[0].getsockname()[1]
        url = f"https://127.0.0.1:{port}/api/v1/webhook/event"
        now = datetime.now(UTC)
        trusting = Sender(url, token, timeout=5, concurrency=1, ca_bundle=str(ca))
        default = Sender(url, token, timeout=5, concurrency=1)
        try:
            good = await trusting.send("e1", "u", "a:b", "{}", now)
            bad = await default.send("e2", "u", "a:b", "{}", now)
        finally:
            await trusting.aclose()
            await default.aclose()
            server.close()
            await server.wait_closed()
        return good.kind, bad.error

    kind, error = asyncio.run(scenario())
    assert kind == "delivered"
    assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error.upper().replace(" ", "_")
