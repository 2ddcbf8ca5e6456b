"""Tests of logwell.testing.IngestServer against the Logwell ingest contract, over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from urllib3.exceptions import ProtocolError

from logwell.testing import TEST_API_KEY, IngestServer, RecordedRequest, Reply

HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"}
MAX_BODY = 524_288


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t not in before and t.name.startswith("logwell-testing")
    ]
    assert leaked == []


@pytest.fixture
def server() -> Iterator[IngestServer]:
    with IngestServer() as srv:
        yield srv


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    manager = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=20))
    yield manager
    manager.clear()


def entry(message: Any = "hello", **fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": message, **fields}


def post(
    pool: urllib3.PoolManager,
    server: IngestServer,
    payload: Any = None,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/v1/ingest",
) -> urllib3.BaseHTTPResponse:
    data = json.dumps(payload).encode() if body is None else body
    return pool.request(
        "POST", server.endpoint + path, body=data, headers=HEADERS if headers is None else headers
    )


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a blocking client call in a thread; the dict gets "value" or "error"."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def error_of(resp: urllib3.BaseHTTPResponse) -> str:
    body = json.loads(resp.data)
    assert isinstance(body["message"], str)
    return str(body["error"])


# -- accepted requests ---------------------------------------------------------------------


def test_single_object_is_stored_with_known_fields_as_sent(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """A single object is stored with only the known fields, values untouched."""
    sent = {
        "level": "warn",
        "message": "disk almost full",
        "timestamp": "2024-05-01T10:00:00.123456+02:00",
        "service": 7,
        "metadata": {},
        "sourceFile": "app.py",
        "lineNumber": 12,
        "traceId": "dropped",
        "extra": {"x": 1},
    }
    resp = post(pool, server, sent)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.data) == {"accepted": 1}
    known = ("level", "message", "timestamp", "service", "metadata", "sourceFile", "lineNumber")
    assert server.entries == [{k: sent[k] for k in known}]
    assert (server.accepted_count, server.rejected_count) == (1, 0)


def test_request_is_recorded(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Each request is recorded with method, path, lower-case headers, size, status, count."""
    body = json.dumps([entry("a"), entry("b")]).encode()
    post(pool, server, body=body, headers={**HEADERS, "X-Custom": "yes"})
    (record,) = server.requests
    assert isinstance(record, RecordedRequest)
    assert (record.method, record.path, record.status) == ("POST", "/v1/ingest", 200)
    assert (record.body_size, record.entry_count) == (len(body), 2)
    assert record.headers["x-custom"] == "yes"
    assert record.headers["authorization"] == f"Bearer {TEST_API_KEY}"


def test_batch_is_stored_in_order(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """A batch of 100 entries is accepted and stored in order."""
    resp = post(pool, server, [entry(f"m{i}") for i in range(100)])
    assert json.loads(resp.data) == {"accepted": 100}
    assert [e["message"] for e in server.entries] == [f"m{i}" for i in range(100)]


def test_partial_batch_reports_rejected_indices(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """Invalid entries are rejected one by one, with their index, and valid ones stored."""
    batch = [
        entry("ok"),
        {"level": "INFO", "message": "bad level"},
        {"level": "info"},
        entry(" \t\n\u3000"),
        {"message": "no level"},
        entry(""),
        entry(5),
        "not an object",
        entry("ok too", level="fatal"),
    ]
    resp = post(pool, server, batch)
    assert resp.status == 200
    body = json.loads(resp.data)
    assert (body["accepted"], body["rejected"]) == (2, 7)
    prefixes = [error.split(":")[0] for error in body["errors"]]
    assert prefixes == [f"Entry at index {i}" for i in (1, 2, 3, 4, 5, 6, 7)]
    assert [e["message"] for e in server.entries] == ["ok", "ok too"]
    assert (server.accepted_count, server.rejected_count) == (2, 7)


def test_all_invalid_batch_still_answers_200(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """A batch where every entry is invalid is answered 200 with accepted 0."""
    resp = post(pool, server, [{"level": "verbose", "message": "x"}])
    assert resp.status == 200
    assert json.loads(resp.data)["accepted"] == 0
    assert server.entries == []


def test_line_number_values_that_are_stored(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """A string or null lineNumber is stored as None; an integral float as an int."""
    batch = [
        entry("s", lineNumber="12"),
        entry("n", lineNumber=None),
        entry("f", lineNumber=42.0),
        entry("max", lineNumber=2**31 - 1),
    ]
    assert post(pool, server, batch).status == 200
    assert [e["lineNumber"] for e in server.entries] == [None, None, 42, 2**31 - 1]


def test_lone_surrogate_and_invalid_utf8_become_replacement_characters(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """What JavaScript parses but orjson refuses is accepted and stored with U+FFFD."""
    surrogate = b'{"level": "info", "message": "a\\ud800b", "metadata": {"k\\udfff": "v"}}'
    assert post(pool, server, body=surrogate).status == 200
    invalid_utf8 = b'\xef\xbb\xbf{"level": "info", "message": "c\xffd"}'
    assert post(pool, server, body=invalid_utf8).status == 200
    assert [e["message"] for e in server.entries] == ["a\ufffdb", "c\ufffdd"]
    assert server.entries[0]["metadata"] == {"k\ufffd": "v"}


def test_exactly_max_body_size_is_accepted(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """A body of exactly 512 KiB is still processed."""
    empty = json.dumps(entry("")).encode()
    body = json.dumps(entry("x" * (MAX_BODY - len(empty)))).encode()
    assert len(body) == MAX_BODY
    assert post(pool, server, body=body).status == 200
    assert server.accepted_count == 1


# -- request errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_are_accepted(
    server: IngestServer, pool: urllib3.PoolManager, content_type: str
) -> None:
    """application/json is accepted with any parameters and any letter case."""
    headers = {**HEADERS, "Content-Type": content_type}
    assert post(pool, server, entry(), headers=headers).status == 200


@pytest.mark.parametrize(
    "content_type", ["application/xml", "text/json", "application/x-ndjson", None]
)
def test_other_content_types_get_415(
    server: IngestServer, pool: urllib3.PoolManager, content_type: str | None
) -> None:
    """Non-JSON content types, or none, are answered 415 with a JSON body."""
    headers = {"Authorization": HEADERS["Authorization"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    resp = post(pool, server, entry(), headers=headers)
    assert resp.status == 415
    assert resp.headers["Content-Type"] == "application/json"
    error_of(resp)
    assert server.entries == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_form_content_types_get_403_plain_text(
    server: IngestServer, pool: urllib3.PoolManager, content_type: str
) -> None:
    """Form-like content types are answered 403 with a plain-text body."""
    resp = post(pool, server, entry(), headers={**HEADERS, "Content-Type": content_type})
    assert resp.status == 403
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.data and not resp.data.startswith(b"{")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"bearer {TEST_API_KEY}",
        f"Token {TEST_API_KEY}",
        f"Bearer  {TEST_API_KEY}",
        "Bearer lw_short",
        "Bearer lw_" + "A" * 32,
        f"Bearer {TEST_API_KEY}x",
    ],
)
def test_wrong_authorization_gets_401(
    server: IngestServer, pool: urllib3.PoolManager, authorization: str | None
) -> None:
    """Anything but exactly "Bearer <key>" is answered 401 unauthorized."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    resp = post(pool, server, entry(), headers=headers)
    assert resp.status == 401
    assert error_of(resp) == "unauthorized"


def test_custom_api_key(pool: urllib3.PoolManager) -> None:
    """A server built with another key accepts only that key."""
    key = "lw_" + "Ab-_" * 8
    with IngestServer(key) as srv:
        assert srv.api_key == key
        assert post(pool, srv, entry()).status == 401
        headers = {**HEADERS, "Authorization": f"Bearer {key}"}
        assert post(pool, srv, entry(), headers=headers).status == 200


def test_unknown_path_gets_404(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Paths other than /v1/ingest are answered 404, including a doubled slash."""
    for path in ("/v1/logs", "/v1/ingest/", "//v1/ingest", "/"):
        resp = post(pool, server, entry(), path=path)
        assert resp.status == 404, path
        error_of(resp)
    assert server.entries == []


def test_query_string_is_ignored(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """A query string does not change the route."""
    assert post(pool, server, entry(), path="/v1/ingest?x=1").status == 200


def test_other_methods_get_405(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """GET, PUT and HEAD on /v1/ingest are answered 405; HEAD without a body."""
    for method in ("GET", "PUT", "DELETE"):
        resp = pool.request(method, server.endpoint + "/v1/ingest", headers=HEADERS)
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        error_of(resp)
    head = pool.request("HEAD", server.endpoint + "/v1/ingest", headers=HEADERS)
    assert head.status == 405
    assert head.data == b""


def test_too_large_body_gets_413_empty_and_closes(server: IngestServer) -> None:
    """A body over 512 KiB is answered 413 with an empty body and Connection: close."""
    body = json.dumps(entry("x" * MAX_BODY)).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", "/v1/ingest", body=body, headers=HEADERS)
        resp = conn.getresponse()
        assert resp.status == 413
        assert resp.read() == b""
        assert resp.getheader("Content-Length") == "0"
        assert resp.getheader("Connection") == "close"
        assert conn.sock is None  # http.client closed it as told
    finally:
        conn.close()
    (record,) = server.requests
    assert (record.status, record.body_size, record.entry_count) == (413, len(body), 0)
    assert server.entries == []


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"level": "info", "message": "x"', b"NaN", b"[1, 2,]", b"{'a': 1}"],
)
def test_broken_json_gets_400_invalid_json(
    server: IngestServer, pool: urllib3.PoolManager, body: bytes
) -> None:
    """A body that is not JSON is answered 400 invalid_json."""
    resp = post(pool, server, body=body)
    assert resp.status == 400
    assert error_of(resp) == "invalid_json"


def test_gzip_body_gets_400_invalid_json(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Content-Encoding is ignored, so a gzip body is invalid JSON."""
    body = gzip.compress(json.dumps([entry()]).encode())
    resp = post(pool, server, body=body, headers={**HEADERS, "Content-Encoding": "gzip"})
    assert resp.status == 400
    assert error_of(resp) == "invalid_json"
    assert server.entries == []


@pytest.mark.parametrize("payload", [[], None, 5, "text", True])
def test_empty_or_non_object_body_gets_400_validation_error(
    server: IngestServer, pool: urllib3.PoolManager, payload: Any
) -> None:
    """[], null and non-object JSON values are answered 400 validation_error."""
    resp = post(pool, server, payload)
    assert resp.status == 400
    assert error_of(resp) == "validation_error"


def test_101_entries_get_400_batch_too_large(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """More than 100 entries are answered 400 batch_too_large and nothing is stored."""
    resp = post(pool, server, [entry() for _ in range(101)])
    assert resp.status == 400
    assert error_of(resp) == "batch_too_large"
    assert server.entries == []
    assert server.requests[0].entry_count == 101


# -- whole-batch 500 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "poison",
    [
        entry("nul \u0000 in message"),
        entry("x", metadata={"key\u0000": "v"}),
        entry("x", metadata={"outer": {"list": ["ok", "nul\u0000"]}}),
        entry("x", lineNumber=42.5),
        entry("x", lineNumber=2**31),
        entry("x", lineNumber=0),
        entry("x", lineNumber=-3),
        entry("x", lineNumber=True),
        entry("x", lineNumber=[1]),
    ],
    ids=[
        "nul-message",
        "nul-metadata-key",
        "nul-nested-value",
        "float-line",
        "huge-line",
        "zero-line",
        "negative-line",
        "bool-line",
        "list-line",
    ],
)
def test_poison_entry_fails_whole_batch_with_500(
    server: IngestServer, pool: urllib3.PoolManager, poison: dict[str, Any]
) -> None:
    """One poison entry makes the whole batch fail with 500; valid neighbours are lost."""
    resp = post(pool, server, [entry("valid before"), poison, entry("valid after")])
    assert resp.status == 500
    body = json.loads(resp.data)
    assert body["message"] == "Internal server error"
    uuid.UUID(body["id"])
    assert server.entries == []
    assert server.accepted_count == 0
    assert post(pool, server, [poison]).status == 500  # a retry fails the same way


def test_message_longer_than_limit_fails_with_500(pool: urllib3.PoolManager) -> None:
    """A message over 1,000,000 characters fails the batch (reachable with a larger body)."""

    class BigBodyServer(IngestServer):
        max_body_bytes = 4 * 1024 * 1024

    with BigBodyServer() as srv:
        assert post(pool, srv, [entry("y"), entry("x" * 1_000_001)]).status == 500
        assert post(pool, srv, [entry("x" * 1_000_000)]).status == 200
        assert srv.accepted_count == 1


def test_nul_in_rejected_entry_or_escaped_text_is_harmless(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """A NUL in an entry that is rejected anyway, or a literal backslash-u0000, is no 500."""
    batch = [
        {"level": "nope", "message": "nul\u0000"},
        entry("a literal \\u0000 text", metadata={"k": "\\u0000"}),
        entry("ok", metadata="string with nul \u0000"),
    ]
    resp = post(pool, server, batch)
    assert resp.status == 200
    assert json.loads(resp.data)["rejected"] == 1
    assert server.entries[0]["message"] == "a literal \\u0000 text"


# -- rate limit ----------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(pool: urllib3.PoolManager) -> None:
    """Past the burst, requests get 429 rate_limited with Retry-After: 60."""
    with IngestServer(rate_limit=(3, 0.001)) as srv:
        assert [post(pool, srv, entry()).status for _ in range(3)] == [200, 200, 200]
        resp = post(pool, srv, entry())
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "60"
        assert error_of(resp) == "rate_limited"
        assert srv.accepted_count == 3


def test_rate_limit_counts_400_but_not_401_or_415(pool: urllib3.PoolManager) -> None:
    """Requests ending in 400 use tokens; 401 and 415 do not."""
    with IngestServer(rate_limit=(3, 0.001)) as srv:
        wrong_key = {**HEADERS, "Authorization": "Bearer lw_" + "z" * 32}
        for _ in range(5):
            assert post(pool, srv, entry(), headers=wrong_key).status == 401
            not_json = {**HEADERS, "Content-Type": "x/y"}
            assert post(pool, srv, entry(), headers=not_json).status == 415
        assert post(pool, srv, body=b"{").status == 400
        assert post(pool, srv, []).status == 400
        assert post(pool, srv, entry()).status == 200
        assert post(pool, srv, entry()).status == 429


def test_rate_limit_refills(pool: urllib3.PoolManager) -> None:
    """Tokens come back at the configured rate."""
    with IngestServer(rate_limit=(1, 5.0)) as srv:
        assert post(pool, srv, entry()).status == 200
        assert post(pool, srv, entry()).status == 429
        time.sleep(0.3)  # the refill itself is what is tested: time has to pass
        assert post(pool, srv, entry()).status == 200


# -- scripted answers ----------------------------------------------------------------------


def test_script_with_statuses(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Scripted statuses are answered in order, with contract-like bodies, storing nothing."""
    server.script(503, 500, 429, 413, 401, 400)
    statuses = [post(pool, server, [entry()]) for _ in range(6)]
    assert [r.status for r in statuses] == [503, 500, 429, 413, 401, 400]
    assert json.loads(statuses[1].data)["message"] == "Internal server error"
    assert statuses[2].headers["Retry-After"] == "60"
    assert statuses[3].data == b""
    assert error_of(statuses[4]) == "unauthorized"
    assert server.entries == []
    assert post(pool, server, [entry()]).status == 200  # the script is used up
    assert [r.status for r in server.requests] == [503, 500, 429, 413, 401, 400, 200]
    assert [r.entry_count for r in server.requests] == [1] * 7
    assert server.accepted_count == 1


def test_script_applies_before_any_check(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """A scripted answer is sent whatever the request, even one that would get 404."""
    server.script(502)
    assert post(pool, server, entry(), path="/elsewhere").status == 502


def test_script_with_reply_objects(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Reply objects set headers and raw bodies; Reply(200) alone processes normally."""
    server.script(
        Reply(429, headers={"Retry-After": "7"}),
        Reply(200, body=b'{"accepted": 99}'),
        Reply(200, headers={"X-Seen": "yes"}),
        Reply(401, body=b"nope", headers={"Content-Type": "text/plain"}),
    )
    first = post(pool, server, entry("a"))
    assert (first.status, first.headers["Retry-After"]) == (429, "7")
    second = post(pool, server, entry("b"))
    assert (second.status, second.data) == (200, b'{"accepted": 99}')
    third = post(pool, server, entry("c"))
    assert (third.status, third.headers["X-Seen"]) == (200, "yes")
    assert json.loads(third.data) == {"accepted": 1}
    fourth = post(pool, server, entry("d"))
    assert (fourth.status, fourth.data) == (401, b"nope")
    assert fourth.headers["Content-Type"] == "text/plain"
    assert [e["message"] for e in server.entries] == ["c"]


def test_scripted_200_still_applies_the_contract(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """Reply(200) without a body goes through normal processing, errors included."""
    server.script(Reply(200), Reply())
    assert post(pool, server, entry(), headers={"Content-Type": "application/json"}).status == 401
    assert post(pool, server, entry()).status == 200


@pytest.mark.timeout(20)
def test_reply_hang_until_release(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """A hung request gets no answer; release() closes it so the client sees an error."""
    server.script(Reply(hang=True))
    thread, result = in_thread(lambda: post(pool, server, [entry()]))
    assert server.wait_for_requests(1, timeout=10)
    assert "value" not in result and "error" not in result
    server.release()
    thread.join(10)
    assert isinstance(result.get("error"), ProtocolError)
    assert server.requests[0].status is None
    assert server.requests[0].entry_count == 1
    assert server.entries == []
    assert post(pool, server, [entry()]).status == 200


@pytest.mark.timeout(20)
def test_reply_reset_resets_the_connection(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Reply(reset=True) reads the request and resets the connection without answering."""
    server.script(Reply(reset=True))
    with pytest.raises(ProtocolError) as caught:
        post(pool, server, [entry()])
    assert isinstance(caught.value.args[1], ConnectionResetError)
    assert server.requests[0].status is None
    assert post(pool, server, [entry()]).status == 200


@pytest.mark.timeout(20)
def test_reply_delay(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """Reply(delay=...) waits before answering; Reply(503, delay=...) then answers 503."""
    server.script(Reply(delay=0.3), Reply(503, delay=0.2))
    started = time.monotonic()
    assert post(pool, server, [entry()]).status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert post(pool, server, [entry()]).status == 503
    assert time.monotonic() - started >= 0.2
    assert server.accepted_count == 1


@pytest.mark.timeout(20)
def test_set_delay_applies_to_every_answer(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """set_delay() slows every answer until it is set back to 0."""
    server.set_delay(0.2)
    for _ in range(2):
        started = time.monotonic()
        assert post(pool, server, entry()).status == 200
        assert time.monotonic() - started >= 0.2
    server.set_delay(0)
    with pytest.raises(ValueError):
        server.set_delay(-1)


def test_reply_validation() -> None:
    """Reply refuses impossible combinations and non-final statuses."""
    with pytest.raises(ValueError):
        Reply(100)
    with pytest.raises(ValueError):
        Reply(200, hang=True, reset=True)
    with pytest.raises(ValueError):
        Reply(200, hang=True, delay=1.0)
    with pytest.raises(ValueError):
        Reply(200, delay=-1.0)
    with pytest.raises(ValueError):
        Reply(200, headers={"X": "a\r\nb"})


# -- connections ---------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_refuse_and_accept_connections_on_the_same_port(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """refuse_connections() makes connects fail; accept_connections() listens again."""
    endpoint = server.endpoint
    assert post(pool, server, entry()).status == 200
    server.refuse_connections()
    server.refuse_connections()  # twice is harmless
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    server.accept_connections()
    assert server.endpoint == endpoint
    pool.clear()
    assert post(pool, server, entry()).status == 200
    assert server.accepted_count == 2


@pytest.mark.timeout(20)
def test_refuse_closes_idle_keep_alive_connections(server: IngestServer) -> None:
    """An idle keep-alive connection is closed by refuse_connections()."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v1/ingest", body=json.dumps(entry()), headers=HEADERS)
        assert conn.getresponse().read() == b'{"accepted":1}'
        server.refuse_connections()
        with pytest.raises(ConnectionError):
            conn.request("POST", "/v1/ingest", body=json.dumps(entry()), headers=HEADERS)
            conn.getresponse()
    finally:
        conn.close()
    assert server.accepted_count == 1


def test_keep_alive_reuses_one_connection(server: IngestServer) -> None:
    """Several requests go over one HTTP/1.1 connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v1/ingest", body=json.dumps(entry()), headers=HEADERS)
        conn.getresponse().read()
        sock = conn.sock
        for _ in range(5):
            conn.request("POST", "/v1/ingest", body=json.dumps(entry()), headers=HEADERS)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") is None
            resp.read()
        assert conn.sock is sock
    finally:
        conn.close()
    assert server.accepted_count == 6


@pytest.mark.timeout(20)
def test_hang_all_and_release(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """hang_all() holds every request until release(), which closes them unanswered."""
    server.hang_all()
    workers = [in_thread(lambda: post(pool, server, [entry()])) for _ in range(3)]
    assert server.wait_for_requests(3, timeout=10)
    server.release()
    for thread, result in workers:
        thread.join(10)
        assert isinstance(result.get("error"), ProtocolError)
    assert [r.status for r in server.requests] == [None, None, None]
    assert post(pool, server, [entry()]).status == 200


@pytest.mark.timeout(20)
def test_stop_while_hung_returns_quickly(pool: urllib3.PoolManager) -> None:
    """stop() wakes hung requests, closes their connections and returns at once."""
    srv = IngestServer().start()
    try:
        srv.hang_all()
        thread, result = in_thread(lambda: post(pool, srv, [entry()]))
        assert srv.wait_for_requests(1, timeout=10)
    finally:
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2
    thread.join(10)
    assert isinstance(result.get("error"), ProtocolError)
    srv.stop()  # idempotent


@pytest.mark.timeout(20)
def test_stop_while_delayed_returns_quickly(pool: urllib3.PoolManager) -> None:
    """stop() cuts a long delay short and the request is never answered."""
    srv = IngestServer().start()
    try:
        srv.set_delay(60)
        thread, result = in_thread(lambda: post(pool, srv, [entry()]))
        assert srv.wait_for_requests(1, timeout=10)
    finally:
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2
    thread.join(10)
    assert isinstance(result.get("error"), ProtocolError)
    assert srv.entries == []


@pytest.mark.timeout(30)
def test_many_concurrent_keep_alive_clients(server: IngestServer) -> None:
    """Many clients with their own keep-alive connections are all served."""
    body = json.dumps([entry(f"m{i}") for i in range(100)])

    def client() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            for _ in range(10):
                conn.request("POST", "/v1/ingest", body=body, headers=HEADERS)
                resp = conn.getresponse()
                assert resp.read() == b'{"accepted":100}'
            return 10
        finally:
            conn.close()

    workers = [in_thread(client) for _ in range(16)]
    for thread, result in workers:
        thread.join(20)
        assert result.get("value") == 10, result
    assert server.wait_for_entries(16_000, timeout=1)
    assert len(server.requests) == 160


def test_chunked_body(server: IngestServer) -> None:
    """A chunked request body is decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        parts = iter([b'[{"level": "info",', b' "message": "chunked"}]'])
        conn.request("POST", "/v1/ingest", body=parts, headers=HEADERS, encode_chunked=True)
        assert conn.getresponse().read() == b'{"accepted":1}'
    finally:
        conn.close()
    assert server.entries == [{"level": "info", "message": "chunked"}]


def raw_exchange(server: IngestServer, data: bytes, *, body: bytes | None = None) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        if body is not None:
            while b"\r\n\r\n" not in received:
                received += sock.recv(4096)
            sock.sendall(body)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_expect_100_continue(server: IngestServer) -> None:
    """A client that waits for 100 Continue gets it, then its answer."""
    body = json.dumps(entry()).encode()
    head = (
        "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_API_KEY}\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    received = raw_exchange(server, head, body=body)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert received.endswith(b'{"accepted":1}')


def test_http_10_request_is_answered_and_closed(server: IngestServer) -> None:
    """An HTTP/1.0 request without keep-alive is answered, then the connection is closed."""
    body = json.dumps(entry()).encode()
    head = (
        "POST /v1/ingest HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    received = raw_exchange(server, head + body)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in received


def test_malformed_request_gets_400_and_close(server: IngestServer) -> None:
    """A request line that is not HTTP is answered 400 and the connection closed."""
    received = raw_exchange(server, b"HELLO\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 ")
    assert server.requests == []


# -- waiting and clearing ------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_wait_for_entries(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """wait_for_entries() times out with False, and returns True once entries arrive."""
    assert server.wait_for_entries(1, timeout=0.05) is False
    thread, result = in_thread(lambda: server.wait_for_entries(3, timeout=10))
    post(pool, server, [entry(), entry()])
    post(pool, server, entry())
    thread.join(10)
    assert result["value"] is True
    assert server.wait_for_requests(2, timeout=0) is True


def test_clear_forgets_what_was_received(server: IngestServer, pool: urllib3.PoolManager) -> None:
    """clear() empties entries, requests and counts but keeps scripted answers."""
    post(pool, server, [entry(), {"level": "x", "message": "y"}])
    server.script(503)
    server.clear()
    assert (server.entries, server.requests) == ([], [])
    assert (server.accepted_count, server.rejected_count) == (0, 0)
    assert post(pool, server, entry()).status == 503


# -- life cycle ----------------------------------------------------------------------------


def test_constructor_and_life_cycle_errors() -> None:
    """Bad keys and rate limits are refused; endpoint needs start(); start() works once."""
    with pytest.raises(ValueError):
        IngestServer("not-a-key")
    with pytest.raises(ValueError):
        IngestServer(rate_limit=(0, 1.0))
    srv = IngestServer()
    with pytest.raises(RuntimeError):
        _ = srv.endpoint
    srv.stop()  # stopping a server never started is harmless
    with srv:
        assert srv.endpoint == f"http://127.0.0.1:{srv.port}"
        with pytest.raises(RuntimeError):
            srv.start()
    srv.stop()


def test_test_api_key_has_the_valid_shape() -> None:
    """TEST_API_KEY is "lw_" and 32 characters of the allowed alphabet."""
    assert TEST_API_KEY.startswith("lw_")
    rest = TEST_API_KEY[3:]
    assert len(rest) == 32
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in rest)


# -- HTTP framing --------------------------------------------------------------------------


def ingest_head(extra: str) -> bytes:
    return (
        "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_API_KEY}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        ingest_head("Content-Length: abc\r\n"),
        ingest_head("Content-Length: 5, 6\r\n"),
        ingest_head("Transfer-Encoding: gzip\r\n"),
        ingest_head("Transfer-Encoding: chunked\r\n") + b"zz\r\n",
        ingest_head("Transfer-Encoding: chunked\r\n") + b"2\r\nabXY",
    ],
    ids=[
        "version",
        "long-line",
        "no-colon",
        "folded",
        "too-many-headers",
        "bad-length",
        "two-lengths",
        "encoding",
        "chunk-size",
        "chunk-end",
    ],
)
def test_unframeable_requests_get_400_and_close(server: IngestServer, request_bytes: bytes) -> None:
    """Requests the HTTP layer cannot frame are answered 400 and the connection closed."""
    assert raw_exchange(server, request_bytes).startswith(b"HTTP/1.1 400 ")
    assert server.requests == []


def test_chunked_body_over_limit_gets_413(server: IngestServer) -> None:
    """A chunked body that grows past 512 KiB is read, then answered 413."""
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(9))
    body += b"0\r\nX-Trailer: 1\r\n\r\n"
    received = raw_exchange(server, ingest_head("Transfer-Encoding: chunked\r\n") + body)
    assert received.startswith(b"HTTP/1.1 413 ")
    assert received.endswith(b"\r\n\r\n")
    assert server.requests[0].body_size == 9 * 65536


def test_http_10_keep_alive_and_stray_empty_lines(server: IngestServer) -> None:
    """HTTP/1.0 keep-alive is honoured and empty lines between requests are skipped."""
    body = json.dumps(entry()).encode()
    one = (
        "POST /v1/ingest HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TEST_API_KEY}\r\nConnection: keep-alive\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    closing = one.replace(b"keep-alive", b"close")
    received = raw_exchange(server, one + body + b"\r\n" + closing + body)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert b"\r\nConnection: keep-alive\r\n" in received
    assert server.accepted_count == 2


def test_client_vanishing_mid_request_is_harmless(server: IngestServer) -> None:
    """A client that disconnects inside a request leaves the server serving."""
    for partial in (
        b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\n",
        ingest_head("Content-Length: 9\r\n"),
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(partial + b"{")
    with urllib3.PoolManager(retries=False) as pool:
        assert post(pool, server, entry()).status == 200


def test_scripted_statuses_without_contract_bodies(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """Statuses outside the contract get a bodiless 204, a JSON 2xx or a JSON error."""
    server.script(204, 202, 504)
    no_content = post(pool, server, entry())
    assert (no_content.status, no_content.data) == (204, b"")
    assert "Content-Length" not in no_content.headers
    accepted = post(pool, server, entry())
    assert (accepted.status, accepted.data) == (202, b"{}")
    gateway = post(pool, server, entry())
    assert (gateway.status, error_of(gateway)) == (504, "gateway_timeout")
    assert server.entries == []


def test_scripted_framing_headers_close_the_connection(server: IngestServer) -> None:
    """A scripted Connection: close or Content-Length is sent and the connection closed."""
    server.script(
        Reply(503, headers={"Connection": "close"}),
        Reply(200, body=b"abc", headers={"Content-Length": "3"}),
    )
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("POST", "/v1/ingest", body=json.dumps(entry()), headers=HEADERS)
            resp = conn.getresponse()
            resp.read()
            assert conn.sock is None or resp.status == 200
        finally:
            conn.close()
    assert [r.status for r in server.requests] == [503, 200]


def test_surrogates_inside_arrays_are_replaced(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """Lone surrogates deep inside metadata arrays are stored as U+FFFD too."""
    body = b'[{"level": "info", "message": "\\udc00", "metadata": {"a": ["\\ud800", [{}]]}}]'
    assert post(pool, server, body=body).status == 200
    assert server.entries == [
        {"level": "info", "message": "\ufffd", "metadata": {"a": ["\ufffd", [{}]]}}
    ]


@pytest.mark.timeout(20)
def test_listen_again_while_a_request_hangs(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """accept_connections() rebinds the port even while an old connection is still open."""
    server.script(Reply(hang=True))
    thread, result = in_thread(lambda: post(pool, server, [entry("hung")]))
    assert server.wait_for_requests(1, timeout=10)
    server.refuse_connections()
    server.accept_connections()
    with urllib3.PoolManager(retries=False) as other:
        assert post(other, server, [entry("fresh")]).status == 200
    server.release()
    thread.join(10)
    assert isinstance(result.get("error"), ProtocolError)
    assert [e["message"] for e in server.entries] == ["fresh"]


def test_stored_line_numbers_follow_their_entries(
    server: IngestServer, pool: urllib3.PoolManager
) -> None:
    """Entries read after several mixed batches keep their own stored lineNumber."""
    post(pool, server, [{"level": "x", "message": "r"}, entry("a", lineNumber="7"), entry("b")])
    post(pool, server, entry("c", lineNumber=3.0))
    assert [e.get("lineNumber", "absent") for e in server.entries] == [None, "absent", 3]
    post(pool, server, [entry("d", lineNumber=9)])
    assert [e["message"] for e in server.entries] == ["a", "b", "c", "d"]
    assert server.entries[-1]["lineNumber"] == 9
