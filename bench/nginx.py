"""nginx answering `return 200` on a free loopback port: a receiver that is not the bottleneck."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format timing '$msec $http_idempotency_key';
    access_log {access};
    client_body_temp_path {dir}/body;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            return 200 '{{"status":"ok"}}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_binary() -> str:
    """Return the nginx command, or exit with how to install it."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        raise SystemExit("bench: nginx is needed as the receiver: apt-get install -y nginx-light")
    return found


@contextmanager
def nginx(*, log_timing: bool = False) -> Iterator[tuple[str, Path | None]]:
    """Run nginx; yield (url, access log path or None). Stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="eventcron-bench-nginx-"))
    port = free_port()
    access = folder / "access.log"
    conf = folder / "nginx.conf"
    conf.write_text(CONFIG.format(dir=folder, port=port,
                                  access=f"{access} timing" if log_timing else "off"))
    proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"bench: nginx did not start: {err.strip()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/api/v1/webhook/event", access if log_timing else None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def nginx_version() -> str:
    try:
        binary = nginx_binary()
    except SystemExit:
        return "no nginx (not needed by the benchmarks run)"
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().replace("nginx version: ", "")
