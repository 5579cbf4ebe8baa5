"""The local Inbound Events API sink, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import jwt
import pytest

from eventcron.testing import (
    DEFAULT_PATH,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    Faults,
    Received,
    Sink,
    SinkThread,
    format_record,
    load_records,
    make_token,
    serve,
)

SECRET = "test-secret-that-is-long-enough-for-hs256"
OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"
TOKEN = "opaque-test-token"  # any bearer token passes when the sink has no secret
VALID: dict[str, Any] = {"app_user_id": "u_1", "event_type": "reminder:checkin",
                         "data": {"campaign": "checkin"}}
VALID_BYTES = json.dumps(VALID).encode()
BASE_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
TIMEOUT = 5.0  # seconds for any single network step in these tests


@pytest.fixture(autouse=True)
def _no_logged_problems(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Client misbehaviour must never put a warning or a traceback in the log.
    caplog.set_level(logging.WARNING)
    yield
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


@pytest.fixture
def sink() -> Iterator[SinkThread]:
    with SinkThread() as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as http:
        yield http


def post(client: httpx.Client, url: str, body: dict[str, Any] | None = None, *,
         token: str = TOKEN, headers: dict[str, str] | None = None) -> httpx.Response:
    all_headers = {**BASE_HEADERS, "Authorization": f"Bearer {token}", **(headers or {})}
    return client.post(url, content=json.dumps(VALID if body is None else body),
                       headers=all_headers)


def error_of(response: httpx.Response) -> str:
    payload = response.json()
    assert list(payload) == ["error"]
    message = payload["error"]
    assert isinstance(message, str)
    return message


def raw_request(body: bytes = VALID_BYTES, *, method: str = "POST", path: str = DEFAULT_PATH,
                version: str = "HTTP/1.1", extra: str = "") -> bytes:
    head = (f"{method} {path} {version}\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode() + body


class Raw:
    """A bare TCP connection speaking HTTP by hand, to see exactly what the sink does."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True


# -- the contract ----------------------------------------------------------------------------

class Rejection(NamedTuple):
    method: str
    path: str
    overrides: dict[str, str | None]  # header changes; None removes the header
    body: bytes
    status: int
    message: str  # part of the error sentence
    header: tuple[str, str] | None  # a response header it must have


REJECTIONS: list[tuple[str, str, str, dict[str, str | None], bytes, int, str,
                       tuple[str, str] | None]] = [
    # id, method, path, header overrides, body, status, message part, response header
    ("wrong-path", "POST", "/api/v1/other", {}, VALID_BYTES, 404, "no endpoint", None),
    ("wrong-path-and-method", "GET", "/", {}, b"", 404, "no endpoint", None),
    ("get", "GET", DEFAULT_PATH, {}, b"", 405, "'GET'", ("allow", "POST")),
    ("put", "PUT", DEFAULT_PATH, {}, VALID_BYTES, 405, "use POST", ("allow", "POST")),
    ("get-with-text", "GET", DEFAULT_PATH, {"Content-Type": "text/plain"}, b"", 405, "POST",
     ("allow", "POST")),
    ("text-plain", "POST", DEFAULT_PATH, {"Content-Type": "text/plain"}, VALID_BYTES, 415,
     "application/json", None),
    ("no-content-type", "POST", DEFAULT_PATH, {"Content-Type": None}, VALID_BYTES, 415,
     "Content-Type", None),
    ("json-suffix", "POST", DEFAULT_PATH, {"Content-Type": "application/jsonx"}, VALID_BYTES,
     415, "Content-Type", None),
    ("text-and-no-auth", "POST", DEFAULT_PATH,
     {"Content-Type": "text/plain", "Authorization": None}, VALID_BYTES, 415, "Content-Type",
     None),
    ("no-authorization", "POST", DEFAULT_PATH, {"Authorization": None}, VALID_BYTES, 401,
     "missing", ("www-authenticate", "Bearer")),
    ("basic-auth", "POST", DEFAULT_PATH, {"Authorization": "Basic dXNlcjpwYXNz"}, VALID_BYTES,
     401, "Bearer <token>", ("www-authenticate", "Bearer")),
    ("bearer-without-token", "POST", DEFAULT_PATH, {"Authorization": "Bearer"}, VALID_BYTES,
     401, "Bearer <token>", ("www-authenticate", "Bearer")),
    ("bearer-two-words", "POST", DEFAULT_PATH, {"Authorization": "Bearer a b"}, VALID_BYTES,
     401, "Bearer <token>", ("www-authenticate", "Bearer")),
    ("no-auth-and-bad-body", "POST", DEFAULT_PATH, {"Authorization": None}, b"[]", 401,
     "missing", ("www-authenticate", "Bearer")),
    ("invalid-json", "POST", DEFAULT_PATH, {}, b'{"app_user_id": ', 400, "not valid JSON",
     None),
    ("invalid-utf8", "POST", DEFAULT_PATH, {}, b'{"app_user_id": "\xff"}', 400, "UTF-8", None),
    ("empty-body", "POST", DEFAULT_PATH, {}, b"", 400, "empty", None),
    ("array-body", "POST", DEFAULT_PATH, {}, b"[1, 2]", 400, "not an array", None),
    ("string-body", "POST", DEFAULT_PATH, {}, b'"hello"', 400, "not a string", None),
    ("nan", "POST", DEFAULT_PATH, {}, b'{"app_user_id": NaN}', 400, "NaN", None),
    ("duplicate-key", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "a", "app_user_id": "b", "event_type": "e", "data": {}}', 400,
     "duplicate key 'app_user_id'", None),
    ("missing-data", "POST", DEFAULT_PATH, {}, b'{"app_user_id": "u", "event_type": "e"}', 400,
     "'data' is missing", None),
    ("missing-app-user-id", "POST", DEFAULT_PATH, {}, b'{"event_type": "e", "data": {}}', 400,
     "'app_user_id' is missing", None),
    ("extra-field", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "u", "event_type": "e", "data": {}, "extra": 1}', 400,
     "'extra' is not allowed", None),
    ("app-user-id-number", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": 7, "event_type": "e", "data": {}}', 400,
     "'app_user_id' must be a string, not a number", None),
    ("app-user-id-empty", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "", "event_type": "e", "data": {}}', 400,
     "'app_user_id' must not be empty", None),
    ("event-type-null", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "u", "event_type": null, "data": {}}', 400,
     "'event_type' must be a string, not null", None),
    ("event-type-empty", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "u", "event_type": "", "data": {}}', 400,
     "'event_type' must not be empty", None),
    ("data-array", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "u", "event_type": "e", "data": []}', 400,
     "'data' must be a JSON object, not an array", None),
    ("data-string", "POST", DEFAULT_PATH, {},
     b'{"app_user_id": "u", "event_type": "e", "data": "{}"}', 400,
     "'data' must be a JSON object, not a string", None),
]


@pytest.mark.parametrize("case", [pytest.param(Rejection(*row[1:]), id=row[0])
                                  for row in REJECTIONS])
def test_contract_rejections(sink: SinkThread, client: httpx.Client, case: Rejection) -> None:
    headers = {**BASE_HEADERS, **case.overrides}
    sent = {name: value for name, value in headers.items() if value is not None}
    url = f"http://127.0.0.1:{sink.port}{case.path}"
    response = client.request(case.method, url, content=case.body, headers=sent)
    assert response.status_code == case.status
    assert case.message in error_of(response)
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-type"] == "application/json"
    if case.header is not None:
        assert response.headers[case.header[0]] == case.header[1]
    assert TOKEN not in response.text
    assert [r.status for r in sink.records] == [case.status]
    assert sink.sink.delivered() == []


@pytest.mark.parametrize(("path_suffix", "headers", "body"), [
    pytest.param("", {}, VALID, id="plain"),
    pytest.param("", {"Content-Type": "Application/JSON; charset=UTF-8"}, VALID,
                 id="content-type-parameters"),
    pytest.param("", {"Authorization": f"bearer {TOKEN}"}, VALID, id="lower-case-scheme"),
    pytest.param("?source=test", {}, VALID, id="query-string"),
    pytest.param("", {}, {"app_user_id": "ü_1", "event_type": "a:b:c",
                          "data": {"nested": {"list": [1, None, True]}}}, id="unicode-nested"),
])
def test_contract_accepts(sink: SinkThread, client: httpx.Client, path_suffix: str,
                          headers: dict[str, str], body: dict[str, Any]) -> None:
    response = client.post(sink.url + path_suffix, content=json.dumps(body),
                           headers={**BASE_HEADERS, **headers})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    [record] = sink.records
    assert (record.status, record.app_user_id, record.data) == (200, body["app_user_id"],
                                                                 body["data"])


def test_head_request_gets_headers_only(sink: SinkThread, client: httpx.Client) -> None:
    response = client.head(sink.url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def _now() -> float:
    return time.time()  # pyjwt checks expiry against the real clock, so tokens must too


@pytest.mark.parametrize(("make", "status", "message"), [
    pytest.param(lambda: make_token(SECRET, now=_now()), 200, None, id="valid"),
    pytest.param(lambda: make_token(SECRET, now=_now(), claims={"sub": "app"}), 200, None,
                 id="valid-with-claims"),
    pytest.param(lambda: make_token(SECRET, now=_now() - 7200, expires_in=3600), 401,
                 "expired", id="expired"),
    pytest.param(lambda: make_token(OTHER_SECRET, now=_now()), 401, "bad signature",
                 id="bad-signature"),
    pytest.param(lambda: "not-a-jwt", 401, "malformed", id="malformed"),
    pytest.param(lambda: "abc.def.ghi", 401, "malformed", id="malformed-segments"),
    pytest.param(lambda: jwt.encode({"exp": int(_now()) + 60}, None, algorithm="none"), 401,
                 "HS256", id="alg-none"),
    pytest.param(lambda: make_token(SECRET, now=_now(), claims={"nbf": int(_now()) + 600}),
                 401, "not valid yet", id="not-yet-valid"),
])
def test_secret_verifies_tokens(client: httpx.Client, make: Any, status: int,
                                message: str | None) -> None:
    token = make()
    assert isinstance(token, str)
    with SinkThread(secret=SECRET) as sink:
        response = post(client, sink.url, token=token)
    assert response.status_code == status
    if message is None:
        assert response.json() == {"status": "ok"}
    else:
        assert message in error_of(response)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert token not in response.text
    [record] = sink.records
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert token not in repr(record)


def test_make_token_claims() -> None:
    token = make_token(SECRET, now=1_000.0, expires_in=60.0, claims={"sub": "app"})
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"iat": 1000, "exp": 1060, "sub": "app"}


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        make_token("short", now=0.0)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Sink(secret="short")


# -- recording -------------------------------------------------------------------------------


def test_valid_request_is_recorded(sink: SinkThread, client: httpx.Client) -> None:
    before = time.time()
    response = post(client, sink.url, headers={"Idempotency-Key": "evt-1",
                                               "User-Agent": "eventcron/0.1.0"})
    after = time.time()
    assert response.status_code == 200
    [record] = sink.records
    assert before <= record.received_at <= after
    assert (record.method, record.path, record.status) == ("POST", DEFAULT_PATH, 200)
    assert (record.app_user_id, record.event_type, record.data) == (
        "u_1", "reminder:checkin", {"campaign": "checkin"})
    assert (record.idempotency_key, record.user_agent) == ("evt-1", "eventcron/0.1.0")
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert record.headers["content-type"] == "application/json"
    assert record.headers["idempotency-key"] == "evt-1"
    assert TOKEN not in repr(record)
    assert format_record(record) == "200 POST u_1 reminder:checkin key=evt-1"


def test_other_authorization_schemes_are_redacted(sink: SinkThread,
                                                  client: httpx.Client) -> None:
    post(client, sink.url, headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="})
    [record] = sink.records
    assert record.headers["authorization"] == "<redacted>"
    assert record.idempotency_key is None


def test_record_file_has_one_json_line_per_request(tmp_path: Path,
                                                   client: httpx.Client) -> None:
    path = tmp_path / "records.jsonl"
    with SinkThread(record_path=path) as sink:
        post(client, sink.url, headers={"Idempotency-Key": "k1", "User-Agent": "ua/1"})
        post(client, sink.url, body={"app_user_id": "u_2"})
        lines = path.read_text(encoding="utf-8").splitlines()  # readable while running
        assert load_records(path) == sink.records
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["status"] == 200
    assert first["idempotency_key"] == "k1"
    assert first["user_agent"] == "ua/1"
    assert first["data"] == VALID["data"]
    assert first["headers"]["authorization"] == "Bearer <redacted>"
    assert (second["status"], second["app_user_id"], second["data"]) == (400, "u_2", None)
    assert TOKEN not in path.read_text(encoding="utf-8")
    assert isinstance(Received.from_json(first), Received)
    with SinkThread(record_path=path) as sink:  # a second run appends
        post(client, sink.url)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_delivered_keys_and_duplicates(sink: SinkThread, client: httpx.Client) -> None:
    for key in ("a", "a", "b"):
        assert post(client, sink.url, headers={"Idempotency-Key": key}).status_code == 200
    assert post(client, sink.url, body={}, headers={"Idempotency-Key": "c"}).status_code == 400
    assert post(client, sink.url).status_code == 200  # no key at all
    assert sink.sink.delivered_keys() == Counter({"a": 2, "b": 1})
    assert sink.sink.duplicates() == {"a": 2}
    assert len(sink.sink.delivered()) == 4
    assert (sink.sink.count(200), sink.sink.count(400), sink.sink.count(503)) == (4, 1, 0)


# -- HTTP framing --------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(sink: SinkThread,
                                                           client: httpx.Client) -> None:
    for _ in range(5):
        assert post(client, sink.url).status_code == 200
    assert sink.sink.connections == 1
    with Raw(sink.port) as raw:
        raw.send(raw_request() + raw_request())  # pipelined
        for _ in range(2):
            status, headers, _ = raw.response()
            assert (status, headers.get("connection")) == (200, None)
        raw.send(raw_request(extra="Connection: close\r\n"))
        status, headers, _ = raw.response()
        assert (status, headers["connection"]) == (200, "close")
        assert raw.closed_by_server()
    assert sink.sink.connections == 2


def test_http_1_0_closes_after_the_response(sink: SinkThread) -> None:
    with Raw(sink.port) as raw:
        raw.send(raw_request(version="HTTP/1.0"))
        status, headers, _ = raw.response()
        assert (status, headers["connection"]) == (200, "close")
        assert raw.closed_by_server()


def test_expect_100_continue(sink: SinkThread) -> None:
    with Raw(sink.port) as raw:
        request = raw_request(extra="Expect: 100-continue\r\n")
        head, body = request[:-len(VALID_BYTES)], request[-len(VALID_BYTES):]
        raw.send(head)
        assert raw.response()[0] == 100
        raw.send(body)
        assert raw.response()[0] == 200


def test_oversize_body_is_413(sink: SinkThread, client: httpx.Client) -> None:
    response = client.post(sink.url, content=b"x" * (MAX_BODY_BYTES + 1), headers=BASE_HEADERS)
    assert response.status_code == 413
    assert "larger than" in error_of(response)
    assert response.headers["connection"] == "close"
    padding = MAX_BODY_BYTES - len(json.dumps({**VALID, "data": {"pad": ""}}))
    largest = json.dumps({**VALID, "data": {"pad": "x" * padding}}).encode()
    assert len(largest) == MAX_BODY_BYTES
    assert client.post(sink.url, content=largest, headers=BASE_HEADERS).status_code == 200
    assert [r.status for r in sink.records] == [413, 200]


def test_chunked_body_is_411(sink: SinkThread, client: httpx.Client) -> None:
    response = client.post(sink.url, content=iter([VALID_BYTES]), headers=BASE_HEADERS)
    assert response.status_code == 411
    assert "Content-Length" in error_of(response)
    assert post(client, sink.url).status_code == 200  # a fresh connection works


@pytest.mark.parametrize("headers", [
    pytest.param({"X-Big": "a" * MAX_HEADER_BYTES}, id="too-large"),
    pytest.param({f"X-H-{i}": "v" for i in range(MAX_HEADER_COUNT)}, id="too-many"),
])
def test_header_limits_are_431(sink: SinkThread, client: httpx.Client,
                               headers: dict[str, str]) -> None:
    response = client.post(sink.url, content=VALID_BYTES, headers={**BASE_HEADERS, **headers})
    assert response.status_code == 431
    assert post(client, sink.url).status_code == 200


@pytest.mark.parametrize(("data", "status"), [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="no-target"),
    pytest.param(b"POST  /x HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="double-space"),
    pytest.param(b"POST / FTP/1.0\r\nHost: x\r\n\r\n", 400, id="not-http"),
    pytest.param(b"POST / HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="http-2"),
    pytest.param(b"POST / HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"POST / HTTP/1.1\r\nHost : x\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nX: a\nb\r\n\r\n", 400, id="bare-lf"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
                 id="content-length-text"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 400, id="content-length-twice"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
                 413, id="content-length-huge"),
])
def test_malformed_requests_are_answered_and_closed(sink: SinkThread, client: httpx.Client,
                                                    data: bytes, status: int) -> None:
    with Raw(sink.port) as raw:
        raw.send(data)
        answer, headers, body = raw.response()
        assert (answer, headers["connection"]) == (status, "close")
        assert json.loads(body)["error"]
        assert raw.closed_by_server()
    assert post(client, sink.url).status_code == 200


def test_methods_are_case_sensitive(sink: SinkThread) -> None:
    with Raw(sink.port) as raw:
        raw.send(raw_request(method="post"))
        status, headers, body = raw.response()
        assert (status, headers["allow"]) == (405, "POST")
        assert "'post'" in json.loads(body)["error"]
        raw.send(raw_request())  # still open: a contract rejection keeps the connection
        assert raw.response()[0] == 200


def test_absolute_form_target(sink: SinkThread) -> None:
    with Raw(sink.port) as raw:
        raw.send(raw_request(path=f"http://127.0.0.1:{sink.port}{DEFAULT_PATH}?q=1"))
        assert raw.response()[0] == 200
        raw.send(raw_request(path=f"http://127.0.0.1:{sink.port}/elsewhere"))
        assert raw.response()[0] == 404


def test_client_disconnects_are_quiet(sink: SinkThread, client: httpx.Client) -> None:
    with Raw(sink.port) as raw:
        raw.send(raw_request()[:-5])  # the body is cut short, then the client goes away
    with Raw(sink.port) as raw:
        raw.send(b"POST /api/v1/web")  # the head is cut short
    with Raw(sink.port) as raw:  # answered, then reset instead of closed
        raw.send(raw_request())
        assert raw.response()[0] == 200
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert post(client, sink.url).status_code == 200
    assert sink.wait_for(lambda s: len(s.records) == 2, TIMEOUT)


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="silent"),
    pytest.param(b"POST / HTTP/1.1\r\nHost", id="slow-head"),
    pytest.param(raw_request()[:-3], id="slow-body"),
])
def test_idle_connections_are_closed(data: bytes) -> None:
    with SinkThread(idle_timeout=0.2) as sink, Raw(sink.port) as raw:
        raw.send(data)
        started = time.monotonic()
        assert raw.closed_by_server()
        assert time.monotonic() - started < TIMEOUT


# -- faults ------------------------------------------------------------------------------------


def statuses(faults: Faults, count: int, client: httpx.Client) -> list[int]:
    with SinkThread(faults=faults) as sink:
        return [post(client, sink.url).status_code for _ in range(count)]


def test_fail_rate_is_deterministic_and_roughly_the_share(client: httpx.Client) -> None:
    first = statuses(Faults(fail_rate=0.3, seed=7), 200, client)
    second = statuses(Faults(fail_rate=0.3, seed=7), 200, client)
    assert first == second
    assert set(first) == {200, 503}
    assert 40 <= first.count(503) <= 80


def test_fail_and_throttle_rates_share_one_draw(client: httpx.Client) -> None:
    faults = Faults(fail_rate=0.2, fail_status=500, throttle_rate=0.2, seed=3)
    first = statuses(faults, 200, client)
    assert first == statuses(Faults(fail_rate=0.2, fail_status=500, throttle_rate=0.2, seed=3),
                             200, client)
    assert 20 <= first.count(500) <= 60
    assert 20 <= first.count(429) <= 60


@pytest.mark.parametrize(("retry_after", "header"), [(2.0, "2"), (0.3, "1"), (0.0, "0")])
def test_throttle_answers_429_with_retry_after(client: httpx.Client, retry_after: float,
                                              header: str) -> None:
    with SinkThread(faults=Faults(throttle_rate=1.0, retry_after=retry_after)) as sink:
        response = post(client, sink.url)
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    assert "too many requests" in error_of(response)


def test_latency_delays_the_answer(client: httpx.Client) -> None:
    with SinkThread(faults=Faults(latency=0.3)) as sink:
        started = time.monotonic()
        response = post(client, sink.url)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.3


def test_faults_only_touch_valid_requests(client: httpx.Client) -> None:
    faults = Faults(fail_rate=1.0, fail_first=5, fail_keys={"u_1": 500})
    with SinkThread(faults=faults) as sink:
        assert post(client, sink.url, body={"app_user_id": "u_1"}).status_code == 400
        assert post(client, sink.url, headers={"Authorization": ""}).status_code == 401
        assert client.post(sink.url + "x", content=VALID_BYTES).status_code == 404
        assert post(client, sink.url).status_code == 500


def test_faults_can_change_at_runtime(sink: SinkThread, client: httpx.Client) -> None:
    assert post(client, sink.url).status_code == 200
    sink.faults.fail_rate = 1.0
    assert post(client, sink.url).status_code == 503
    sink.faults = Faults(throttle_rate=1.0)
    assert post(client, sink.url).status_code == 429
    sink.faults = Faults()
    assert post(client, sink.url).status_code == 200


def test_new_faults_restart_the_random_sequence(sink: SinkThread,
                                                client: httpx.Client) -> None:
    fresh = statuses(Faults(fail_rate=0.5, seed=5), 30, client)
    assert post(client, sink.url).status_code == 200
    sink.faults = Faults(fail_rate=0.5, seed=5)
    assert [post(client, sink.url).status_code for _ in range(30)] == fresh


def test_fail_first(client: httpx.Client) -> None:
    assert statuses(Faults(fail_first=2), 4, client) == [503, 503, 200, 200]
    assert statuses(Faults(fail_first=1, fail_status=500), 2, client) == [500, 200]


def test_fail_keys(sink: SinkThread, client: httpx.Client) -> None:
    sink.faults = Faults(fail_keys={"u_bad": 400, "u_gone": 410, "u_busy": 429})
    answers = {user: post(client, sink.url, body={**VALID, "app_user_id": user})
               for user in ("u_bad", "u_ok", "u_gone", "u_busy")}
    assert {user: r.status_code for user, r in answers.items()} == {
        "u_bad": 400, "u_ok": 200, "u_gone": 410, "u_busy": 429}
    assert "'u_bad'" in error_of(answers["u_bad"])
    assert answers["u_busy"].headers["retry-after"] == "1"


def test_reject_token_and_set_reject_token(client: httpx.Client) -> None:
    with SinkThread(faults=Faults(reject_token="revoked-token")) as sink:
        revoked = post(client, sink.url, token="revoked-token")
        assert revoked.status_code == 401
        assert "revoked" in error_of(revoked)
        assert revoked.headers["www-authenticate"].startswith("Bearer")
        assert post(client, sink.url, token="fresh-token").status_code == 200
        sink.set_reject_token("fresh-token")
        assert post(client, sink.url, token="fresh-token").status_code == 401
        assert post(client, sink.url, token="revoked-token").status_code == 200
        sink.set_reject_token(None)
        assert post(client, sink.url, token="fresh-token").status_code == 200
    assert "revoked-token" not in repr(sink.records)


@pytest.mark.slow
def test_down_period_refuses_then_recovers_on_the_same_port(client: httpx.Client) -> None:
    with SinkThread(faults=Faults(down_after=0.4, down_for=0.8)) as sink:
        port = sink.port
        assert post(client, sink.url).status_code == 200
        with Raw(port) as raw:
            raw.send(raw_request())
            assert raw.response()[0] == 200
            assert sink.wait_for(lambda s: not s.listening, TIMEOUT)
            assert raw.closed_by_server()  # the open keep-alive connection was dropped
        with pytest.raises(httpx.ConnectError):
            post(client, sink.url)
        assert sink.wait_for(lambda s: s.listening, TIMEOUT)
        assert post(client, sink.url).status_code == 200
        assert (sink.port, sink.sink.outages) == (port, 1)


def test_down_every_repeats_outages(client: httpx.Client) -> None:
    with SinkThread(faults=Faults(down_after=0.1, down_for=0.2, down_every=0.4)) as sink:
        port = sink.port
        assert sink.wait_for(lambda s: s.outages >= 2, TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        answers: list[int | str] = []
        while 200 not in answers and time.monotonic() < deadline:
            try:  # the sink keeps going up and down: some attempts are refused
                answers.append(post(client, sink.url).status_code)
            except httpx.TransportError as error:
                answers.append(type(error).__name__)
        assert 200 in answers
        assert sink.port == port


def test_go_down_and_come_up_on_demand(sink: SinkThread, client: httpx.Client) -> None:
    url = sink.url
    sink.go_down()
    with pytest.raises(httpx.ConnectError):
        post(client, url)
    sink.come_up()
    assert sink.url == url
    assert post(client, url).status_code == 200


@pytest.mark.parametrize("settings", [
    {"fail_rate": 1.5}, {"fail_rate": 0.6, "throttle_rate": 0.6}, {"latency": -1.0},
    {"down_every": 5.0}, {"down_after": 1.0, "down_for": 2.0, "down_every": 1.0},
    {"fail_status": 99}, {"fail_keys": {"u": 600}},
])
def test_nonsense_faults_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|needs"):
        Faults(**settings)


# -- asyncio use -------------------------------------------------------------------------------


def test_async_sink_and_wait_for() -> None:
    async def scenario() -> None:
        async with Sink() as sink, httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.post(sink.url, content=VALID_BYTES, headers=BASE_HEADERS)
            assert response.status_code == 200
            assert await sink.wait_for(lambda s: len(s.delivered()) == 1, TIMEOUT)
            assert not await sink.wait_for(lambda s: len(s.records) > 1, 0.05)

    asyncio.run(scenario())


def test_concurrent_requests_give_the_same_fault_count_as_sequential(
        client: httpx.Client) -> None:
    sequential = statuses(Faults(fail_rate=0.5, seed=11), 60, client).count(503)

    async def scenario() -> Counter[int]:
        async with Sink(faults=Faults(fail_rate=0.5, seed=11)) as sink, \
                httpx.AsyncClient(timeout=TIMEOUT) as http:
            responses = await asyncio.gather(*(
                http.post(sink.url, content=VALID_BYTES,
                          headers={**BASE_HEADERS, "Idempotency-Key": f"k{i}"})
                for i in range(60)))
            assert sink.duplicates() == {}
            assert len(sink.delivered_keys()) == 60 - sequential
            return Counter(r.status_code for r in responses)

    assert asyncio.run(scenario())[503] == sequential


class Announced(io.StringIO):
    """A stdout that tells when something was written (create it inside the event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


def test_serve_prints_the_url_and_one_line_per_request() -> None:
    token = make_token(SECRET, now=time.time())

    async def scenario() -> tuple[int, str, str]:
        out, err, stop = Announced(), io.StringIO(), asyncio.Event()
        task = asyncio.create_task(serve(secret=SECRET, stdout=out, stderr=err, stop=stop))
        async with asyncio.timeout(TIMEOUT):
            await out.written.wait()
        url = out.getvalue().split("listening on ")[1].strip()
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            ok = await http.post(url, content=VALID_BYTES, headers={
                **BASE_HEADERS, "Authorization": f"Bearer {token}", "Idempotency-Key": "k1"})
            assert ok.status_code == 200
            assert (await http.get(url + "/x")).status_code == 404
        stop.set()
        return await task, out.getvalue(), err.getvalue()

    code, out, err = asyncio.run(scenario())
    assert code == 0
    assert out.startswith("eventcron sink listening on http://127.0.0.1:")
    assert out.strip().endswith(DEFAULT_PATH)
    assert err.splitlines() == ["200 POST u_1 reminder:checkin key=k1",
                                f"404 GET {DEFAULT_PATH}/x"]
    assert token not in err


def test_serve_stops_on_sigterm() -> None:
    async def scenario() -> int:
        out = Announced()
        task = asyncio.create_task(serve(stdout=out, stderr=io.StringIO()))
        async with asyncio.timeout(TIMEOUT):
            await out.written.wait()
        # Without serve's handler, SIGTERM would end the test run itself.
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            return await task

    assert asyncio.run(scenario()) == 0


def test_serve_reports_a_port_in_use(sink: SinkThread) -> None:
    err = io.StringIO()
    code = asyncio.run(serve(port=sink.port, stdout=io.StringIO(), stderr=err))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{sink.port}" in err.getvalue()


def test_serve_reports_an_unwritable_record_file(tmp_path: Path) -> None:
    err = io.StringIO()
    record = tmp_path / "missing" / "records.jsonl"
    code = asyncio.run(serve(record_path=record, stdout=io.StringIO(), stderr=err))
    assert code == 1
    assert f"cannot write {record}" in err.getvalue()


def test_serve_reports_a_short_secret() -> None:
    err = io.StringIO()
    assert asyncio.run(serve(secret="short", stdout=io.StringIO(), stderr=err)) == 1
    assert "at least 32 bytes" in err.getvalue()


def test_lifecycle_errors() -> None:
    sink = SinkThread().start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            sink.start()
    finally:
        sink.stop()
    sink.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        sink.go_down()
