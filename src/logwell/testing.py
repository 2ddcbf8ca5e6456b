"""A real HTTP server on loopback that behaves like the Logwell ingest endpoint.

Tests of code that logs should meet the server's real answers over real sockets, not a mock:
the odd parts of the contract (a whole batch failing with 500 because of one entry, 413 with
an empty body, 429 with ``Retry-After``) and the failures of a network (refused connections,
resets, hangs, slow answers) are what a shipper must survive. The behaviour follows the
observed contract of Logwell v1.1.3 for ``POST /v1/ingest``.

Only the standard library and orjson are used, so the module can ship with the package.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import selectors
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import IO, Any, NamedTuple

import orjson

__all__ = ["INGEST_PATH", "TEST_API_KEY", "IngestServer", "RecordedRequest", "Reply"]

TEST_API_KEY = "lw_testtesttesttesttesttesttesttest"
"""A key of the valid shape (``lw_`` and 32 characters), accepted by default."""

INGEST_PATH = "/v1/ingest"

_API_KEY_RE = re.compile(r"lw_[A-Za-z0-9_-]{32}")
_LEVELS = frozenset(("debug", "info", "warn", "error", "fatal"))
_KNOWN_FIELDS = ("level", "message", "timestamp", "service", "metadata", "sourceFile", "lineNumber")
_MAX_LINE_NUMBER = 2**31 - 1
# What JavaScript's String.prototype.trim() removes; the server checks messages with it.
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_FORM_TYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data", "text/plain"))
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100
# An oversized body is read and thrown away (so the client can read the 413) up to this size.
_DRAIN_LIMIT = 64 * 1024 * 1024
_HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Inside JSON text a NUL can only be written as this escape, so its absence skips the scan.
_NUL_ESCAPE = b"\\u0000"
_LINGER_RESET = struct.pack("hh" if os.name == "nt" else "ii", 1, 0)
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """A scripted answer, so tests can make the server misbehave on purpose.

    ``Reply()`` / ``Reply(200)`` without a body lets the request be processed normally (with
    ``headers`` added and ``delay`` applied). Any other status answers without processing, with
    ``body`` or, if empty, a body shaped like the real server's for that status.
    At most one of ``hang``, ``reset`` and ``delay`` may be set; ``delay`` adds to
    :meth:`IngestServer.set_delay`.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    reset: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be a final HTTP status (200-599), got {self.status}")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.hang + self.reset + (self.delay > 0) > 1:
            raise ValueError("set at most one of hang, reset and delay")
        for name, value in self.headers.items():
            text = name + value
            if "\r" in text or "\n" in text or not text.isascii():
                raise ValueError(f"header {name!r} must be ASCII without line breaks")

    @property
    def passthrough(self) -> bool:
        """True when the request should be processed as the real server would."""
        return self.status == 200 and not self.body and not self.hang and not self.reset


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it reached the server, for assertions on what a client sent."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case; repeated headers joined with ``", "``."""
    body_size: int
    status: int | None
    """The status answered; None while in flight, or when hung, reset or cut by stop()."""
    entry_count: int
    """Entries in the JSON body (1 for an object, the length of an array, else 0)."""


class _Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str | None
    headers: list[tuple[str, str]]
    close: bool


class _BadRequest(Exception):
    """A request the HTTP layer cannot frame; answered with 400 and a closed connection."""


class _BadJson(Exception):
    pass


class _Batch(NamedTuple):
    """A stored request body: entries are built from it only when someone reads them.

    Keeping parsed entries alive for every request would make a long run allocation-bound
    (and its memory several times larger); the raw body is already in memory anyway.
    """

    body: bytes
    accepted: list[int] | None  # indices of the accepted entries; None when all were
    line_numbers: dict[int, Any]  # stored lineNumber where it differs from the sent one


class _Slot:
    """Holds a request record that is completed (status) after it was first published."""

    __slots__ = ("record",)

    def __init__(self, record: RecordedRequest) -> None:
        self.record = record


class _Conn:
    __slots__ = ("closed", "idle", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle = True
        self.closed = False


_INVALID: Any = object()
_POISON: Any = object()


def _json_answer(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> _Answer:
    return _Answer(status, orjson.dumps(payload), _JSON, headers or [], False)


def _error(status: int, error: str, message: str) -> _Answer:
    return _json_answer(status, {"error": error, "message": message})


_NOT_FOUND = _error(404, "not_found", "Not found")
_NOT_ALLOWED = _Answer(
    405,
    orjson.dumps({"error": "method_not_allowed", "message": "Use POST"}),
    _JSON,
    [("Allow", "POST")],
    False,
)
_TOO_LARGE = _Answer(413, b"", None, [], True)
_FORBIDDEN = _Answer(403, b"Form submissions are not accepted here\n", _TEXT, [], False)
_UNSUPPORTED = _error(415, "unsupported_media_type", "Content-Type must be application/json")
_UNAUTHORIZED = _error(401, "unauthorized", "Missing or invalid API key")
_RATE_LIMITED = _Answer(
    429,
    orjson.dumps({"error": "rate_limited", "message": "Too many requests"}),
    _JSON,
    [("Retry-After", "60")],
    False,
)
_INVALID_JSON = _error(400, "invalid_json", "The request body is not valid JSON")
_BATCH_TOO_LARGE = _error(400, "batch_too_large", "A batch holds at most 100 entries")
_SCRIPTED = {
    400: _error(400, "validation_error", "Invalid request"),
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    404: _NOT_FOUND,
    405: _NOT_ALLOWED,
    413: _TOO_LARGE,
    415: _UNSUPPORTED,
    429: _RATE_LIMITED,
}


def _internal_error() -> _Answer:
    return _json_answer(500, {"id": str(uuid.uuid4()), "message": "Internal server error"})


def _scripted_answer(reply: Reply) -> _Answer:
    status = reply.status
    if reply.body:
        return _Answer(status, reply.body, _TEXT if status == 403 else _JSON, [], False)
    if status in (204, 304):
        return _Answer(status, b"", None, [], False)
    if status == 500:
        return _internal_error()
    known = _SCRIPTED.get(status)
    if known is not None:
        return known
    if status < 300:
        return _Answer(status, b"{}", _JSON, [], False)
    phrase = _PHRASES.get(status, "Error")
    return _error(status, phrase.lower().replace(" ", "_").replace("-", "_"), phrase)


def _merge_headers(base: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    replaced = {name.lower() for name in extra}
    return [(n, v) for n, v in base if n.lower() not in replaced] + list(extra.items())


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _fix_str(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _fix_surrogates(value: Any) -> Any:
    """Replace lone surrogates by U+FFFD in place, as the server's storage does."""
    if isinstance(value, str):
        return _fix_str(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _fix_str(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, item in items:
                if isinstance(item, str):
                    item = _fix_str(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
                node[_fix_str(key)] = item
    return value


def _parse_json(body: bytes) -> Any:
    """Parse like the server's ``request.json()``; raise _BadJson where it would fail."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # JavaScript decodes invalid UTF-8 as U+FFFD, skips a BOM and accepts lone surrogate
    # escapes, all of which orjson refuses; this slower path is only taken for such bodies.
    try:
        value = json.loads(body.decode("utf-8-sig", "replace"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _BadJson from exc
    return _fix_surrogates(value)


def _contains_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            for key, item in node.items():
                if "\x00" in key:
                    return True
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _line_number(value: Any) -> Any:
    """The value stored for ``lineNumber``, or _POISON when the insert would fail (500)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return _POISON
    if isinstance(value, float):
        # JSON.parse cannot tell 42.0 from 42; only a fractional part breaks the insert.
        if not value.is_integer():
            return _POISON
        value = int(value)
    if isinstance(value, int) and 1 <= value <= _MAX_LINE_NUMBER:
        return value
    return _POISON


def _entry_problem(item: Any) -> str | None:
    """Why the server rejects this entry, or None when it accepts it."""
    if not isinstance(item, dict):
        return "must be a JSON object"
    if "level" not in item:
        return "level is missing"
    level = item["level"]
    if not isinstance(level, str) or level not in _LEVELS:
        return "level must be one of debug, info, warn, error, fatal"
    if "message" not in item:
        return "message is missing"
    message = item["message"]
    if not isinstance(message, str):
        return "message must be a string"
    if not message or (message[0] in _JS_WHITESPACE and not message.strip(_JS_WHITESPACE)):
        return "message must not be empty or only whitespace"
    return None


class _TokenBucket:
    """The server's per-key limiter: a burst, then a steady refill."""

    def __init__(self, burst: int, per_second: float) -> None:
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._rate = per_second
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another socket steal the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Acceptor:
    """Accepts on one listening socket until stopped; refusing means closing that socket."""

    def __init__(self, server: IngestServer, listener: socket.socket) -> None:
        self._server = server
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="logwell-testing-accept", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._listener:
                        self._accept_pending()

    def _accept_pending(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors or an aborted handshake
                return
            sock.setblocking(True)
            self._server._spawn(sock)

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()


class IngestServer:
    """Imitates the Logwell ingest server on loopback; records what it received.

    Use as a context manager (or call :meth:`start` and :meth:`stop`) and point the client at
    :attr:`endpoint`. Each connection is served by its own daemon thread, with keep-alive.
    """

    max_body_bytes = 524_288
    """The server's body limit (512 KiB); a subclass may change it, e.g. to reach 500s."""
    max_batch_entries = 100
    max_message_chars = 1_000_000
    """Longer messages overflow PostgreSQL's full-text vector: the whole batch fails."""

    def __init__(
        self,
        api_key: str = TEST_API_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        if not _API_KEY_RE.fullmatch(api_key):
            raise ValueError("api_key must be 'lw_' followed by 32 of [A-Za-z0-9_-]")
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] < 0):
            raise ValueError("rate_limit must be (burst >= 1, per_second >= 0)")
        self.api_key = api_key
        self._host = host
        self._port = port
        self._expected_auth = "Bearer " + api_key
        self._bucket = _TokenBucket(*rate_limit) if rate_limit is not None else None

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._control = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._pending: list[_Batch] = []
        self._slots: list[_Slot] = []
        self._accepted = 0
        self._rejected = 0
        self._script: deque[Reply] = deque()
        self._delay = 0.0
        self._hang_all = False
        self._release_event = threading.Event()
        self._stop_event = threading.Event()
        self._conns: set[_Conn] = set()
        self._threads: set[threading.Thread] = set()
        self._thread_ids = itertools.count(1)
        self._acceptor: _Acceptor | None = None
        self._started = False
        self._stopping = False
        self._refused = False

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> IngestServer:
        """Bind and serve in daemon threads; returns self."""
        with self._control:
            if self._started:
                raise RuntimeError("an IngestServer can be started only once")
            listener = _bind(self._host, self._port)
            self._port = listener.getsockname()[1]
            self._acceptor = _Acceptor(self, listener)
            self._acceptor.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop serving: wake hung and delayed requests, close every connection, join threads.

        Idempotent, and quick even while requests hang.
        """
        with self._control:
            if not self._started or self._stopping:
                return
            with self._lock:
                self._stopping = True
                self._hang_all = False
                self._release_event.set()
                acceptor, self._acceptor = self._acceptor, None
            self._stop_event.set()
            if acceptor is not None:
                acceptor.stop()
            with self._lock:
                for conn in self._conns:
                    self._shutdown(conn)
                threads = list(self._threads)
            for thread in threads:
                thread.join(timeout=10.0)

    def __enter__(self) -> IngestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port; the same after refuse_connections()/accept_connections()."""
        if not self._started:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """Base URL to give a client, without a trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    # -- what was received ------------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Accepted entries in arrival order, with only the fields the server stores.

        Values are as sent, except ``lineNumber`` (a string becomes None, 42.0 becomes 42).
        A new list each time; entries are built from the stored bodies on first read.
        """
        with self._lock:
            self._build_entries()
            return list(self._entries)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached the server, in arrival order."""
        with self._lock:
            return [slot.record for slot in self._slots]

    @property
    def accepted_count(self) -> int:
        """Entries accepted (the sum of the ``accepted`` answers)."""
        with self._lock:
            return self._accepted

    @property
    def rejected_count(self) -> int:
        """Entries rejected one by one in 200 answers (the sum of ``rejected``)."""
        with self._lock:
            return self._rejected

    def wait_for_entries(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` entries are stored; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._accepted >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` requests have arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._slots) >= n, timeout)

    def clear(self) -> None:
        """Forget received entries, requests and counts; behaviours stay as they are."""
        with self._cond:
            self._entries = []
            self._pending = []
            self._slots = []
            self._accepted = 0
            self._rejected = 0
            self._cond.notify_all()

    # -- behaviours -------------------------------------------------------------------------

    def script(self, *replies: int | Reply) -> None:
        """Queue answers for the next requests, first in first out (an int is Reply(int))."""
        queued = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        with self._lock:
            self._script.extend(queued)

    def set_delay(self, seconds: float) -> None:
        """Make every answer wait this long first (stop() cuts the wait short)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            self._delay = float(seconds)

    def refuse_connections(self) -> None:
        """Close the listening socket (connects get ECONNREFUSED) and idle connections.

        Busy connections finish their request and are then closed.
        """
        with self._control:
            if not self._started:
                raise RuntimeError("the server is not started")
            with self._lock:
                if self._stopping or self._refused:
                    return
                self._refused = True
                acceptor, self._acceptor = self._acceptor, None
            if acceptor is not None:
                acceptor.stop()
            with self._lock:
                for conn in self._conns:
                    if conn.idle:
                        self._shutdown(conn)

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        with self._control:
            if not self._started:
                raise RuntimeError("the server is not started")
            if self._stopping or not self._refused:
                return
            acceptor = _Acceptor(self, _bind(self._host, self._port))
            with self._lock:
                self._acceptor = acceptor
                self._refused = False
            acceptor.start()

    def hang_all(self) -> None:
        """From now on accept every request and never answer it, until release()."""
        with self._lock:
            self._hang_all = True

    def release(self) -> None:
        """Close hung requests without an answer (clients see a connection error); stop hanging."""
        with self._lock:
            self._hang_all = False
            self._release_event.set()
            self._release_event = threading.Event()

    # -- connections ------------------------------------------------------------------------

    def _spawn(self, sock: socket.socket) -> None:
        """Serve a new connection in its own daemon thread (called by the acceptor)."""
        with contextlib.suppress(OSError):  # the client may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        thread = threading.Thread(
            target=self._serve,
            args=(conn,),
            name=f"logwell-testing-conn-{next(self._thread_ids)}",
            daemon=True,
        )
        with self._lock:
            if self._stopping:
                sock.close()
                return
            if len(self._threads) > 256:
                self._threads = {t for t in self._threads if t.is_alive()}
            self._conns.add(conn)
            self._threads.add(thread)
        thread.start()

    def _shutdown(self, conn: _Conn) -> None:
        """Wake the connection's thread by shutting the socket down; call with _lock held."""
        if not conn.closed:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def _serve(self, conn: _Conn) -> None:
        rfile = conn.sock.makefile("rb")
        try:
            while self._serve_one(conn, rfile):
                pass
        except OSError:
            pass  # the client went away, or stop()/refuse_connections() shut the socket
        finally:
            rfile.close()
            with self._lock:
                conn.closed = True
                self._conns.discard(conn)
            conn.sock.close()

    def _serve_one(self, conn: _Conn, rfile: IO[bytes]) -> bool:
        """Serve one request; return whether to keep the connection."""
        conn.idle = True
        line = rfile.readline(_MAX_HEADER_LINE + 1)
        conn.idle = False
        if not line:
            return False
        if line in (b"\r\n", b"\n"):  # a stray empty line between requests is allowed
            return True
        try:
            method, target, http11, headers = self._read_head(line, rfile)
            if http11 and headers.get("expect", "").lower() == "100-continue":
                conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body, size = self._read_body(rfile, headers)
        except _BadRequest as exc:
            bad = _error(400, "bad_request", str(exc))
            self._send(conn, bad._replace(close=True), http11=True, keep=False, head=False)
            return False
        tokens = [t.strip() for t in headers.get("connection", "").lower().split(",")]
        keep = "close" not in tokens if http11 else "keep-alive" in tokens

        parsed = _INVALID
        if body is not None:
            with contextlib.suppress(_BadJson):
                parsed = _parse_json(body)
        count = len(parsed) if isinstance(parsed, list) else 1 if isinstance(parsed, dict) else 0
        slot = _Slot(RecordedRequest(method, target, headers, size, None, count))
        with self._cond:
            self._slots.append(slot)
            self._cond.notify_all()
            hang = self._hang_all
            reply = self._script.popleft() if self._script and not hang else None
            delay = self._delay
            release = self._release_event
            stopping = self._stopping

        if hang or (reply is not None and reply.hang):
            if not stopping:
                release.wait()
            return False
        if reply is not None and reply.reset:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            return False
        if reply is not None:
            delay += reply.delay
        if delay > 0 and self._stop_event.wait(delay):
            return False

        if reply is None or reply.passthrough:
            answer = self._process(method, target, headers, body, parsed)
        else:
            answer = _scripted_answer(reply)
        if reply is not None and reply.headers:
            answer = answer._replace(headers=_merge_headers(answer.headers, reply.headers))
        with self._lock:
            slot.record = RecordedRequest(method, target, headers, size, answer.status, count)
        return self._send(conn, answer, http11=http11, keep=keep, head=method == "HEAD")

    def _send(self, conn: _Conn, answer: _Answer, *, http11: bool, keep: bool, head: bool) -> bool:
        """Write the whole answer in one call; return whether the connection stays open."""
        status, body, content_type, headers, close = answer
        close = close or not keep or self._refused or self._stopping
        names = {name.lower() for name, _ in headers}
        lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, 'Unknown')}", "Date: " + _http_date()]
        if content_type is not None and "content-type" not in names:
            lines.append("Content-Type: " + content_type)
        if "content-length" in names:
            close = True  # the script chose the framing; do not trust it for the next request
        elif status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        if "connection" in names:
            close = close or any(
                v.lower() == "close" for n, v in headers if n.lower() == "connection"
            )
        elif close:
            lines.append("Connection: close")
        elif not http11:
            lines.append("Connection: keep-alive")
        lines.extend(f"{name}: {value}" for name, value in headers)
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.sock.sendall(data if head else data + body)
        return not close

    # -- HTTP framing -----------------------------------------------------------------------

    @staticmethod
    def _read_head(line: bytes, rfile: IO[bytes]) -> tuple[str, str, bool, dict[str, str]]:
        if len(line) > _MAX_HEADER_LINE:
            raise _BadRequest("request line too long")
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[0]:
            raise _BadRequest("malformed request line")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = rfile.readline(_MAX_HEADER_LINE + 1)
            if not raw:
                raise ConnectionAbortedError("closed inside the request head")
            if raw in (b"\r\n", b"\n"):
                break
            name, sep, value = raw.partition(b":")
            if len(raw) > _MAX_HEADER_LINE or not sep or not name.strip() or raw[:1] in b" \t":
                raise _BadRequest("malformed header line")
            key = name.decode("latin-1").strip().lower()
            text = value.decode("latin-1").strip()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        else:
            raise _BadRequest("too many headers")
        method = parts[0].decode("latin-1")
        return method, parts[1].decode("latin-1"), parts[2] == b"HTTP/1.1", headers

    def _read_body(self, rfile: IO[bytes], headers: dict[str, str]) -> tuple[bytes | None, int]:
        """Return the body and its size; the body is None (and discarded) when too large."""
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.rsplit(",", 1)[-1].strip().lower() != "chunked":
                raise _BadRequest("unsupported transfer encoding")
            return self._read_chunked(rfile)
        declared = headers.get("content-length")
        if declared is None:
            return b"", 0
        values = {v.strip() for v in declared.split(",")}
        value = values.pop()
        if values or not (value.isascii() and value.isdigit()):
            raise _BadRequest("invalid Content-Length")
        # Beyond what the drain accepts anyway; also keeps int() away from absurd digit strings.
        length = int(value) if len(value) <= 12 else _DRAIN_LIMIT + 1
        if length > self.max_body_bytes:
            if length <= _DRAIN_LIMIT:
                _discard(rfile, length)
            return None, length
        data = rfile.read(length)
        if len(data) < length:
            raise ConnectionAbortedError("closed inside the request body")
        return data, length

    def _read_chunked(self, rfile: IO[bytes]) -> tuple[bytes | None, int]:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = rfile.readline(1024)
            if not size_line:
                raise ConnectionAbortedError("closed inside a chunked body")
            digits = size_line.split(b";", 1)[0].strip()
            if not _HEX_RE.fullmatch(digits):
                raise _BadRequest("malformed chunk size")
            size = int(digits, 16)
            if size == 0:
                break
            total += size
            if total > _DRAIN_LIMIT:
                raise _BadRequest("chunked body too large")
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise ConnectionAbortedError("closed inside a chunk")
            if total <= self.max_body_bytes:
                parts.append(chunk)
            if rfile.read(2) != b"\r\n":
                raise _BadRequest("malformed chunk end")
        while True:  # trailer fields, ignored
            trailer = rfile.readline(_MAX_HEADER_LINE + 1)
            if not trailer:
                raise ConnectionAbortedError("closed inside chunked trailers")
            if trailer in (b"\r\n", b"\n"):
                break
        if total > self.max_body_bytes:
            return None, total
        return b"".join(parts), total

    # -- the contract -----------------------------------------------------------------------

    def _process(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, parsed: Any
    ) -> _Answer:
        """Answer as the real server does, checking in the contract's order."""
        if target.split("?", 1)[0] != INGEST_PATH:
            return _NOT_FOUND
        if method != "POST":
            return _NOT_ALLOWED
        if body is None:
            return _TOO_LARGE
        content_type = headers.get("content-type")
        media = content_type.split(";", 1)[0].strip().lower() if content_type else ""
        if media != _JSON:
            return _FORBIDDEN if media in _FORM_TYPES else _UNSUPPORTED
        if headers.get("authorization") != self._expected_auth:
            return _UNAUTHORIZED
        if self._bucket is not None and not self._bucket.take():
            return _RATE_LIMITED
        if parsed is _INVALID:
            return _INVALID_JSON
        if isinstance(parsed, dict):
            items: list[Any] = [parsed]
        elif isinstance(parsed, list):
            if not parsed:
                return _error(400, "validation_error", "The batch must not be empty")
            if len(parsed) > self.max_batch_entries:
                return _BATCH_TOO_LARGE
            items = parsed
        else:
            return _error(400, "validation_error", "Send one log object or an array of them")
        return self._ingest(body, items)

    def _ingest(self, body: bytes, items: list[Any]) -> _Answer:
        scan_nul = _NUL_ESCAPE in body
        accepted: list[int] = []
        line_numbers: dict[int, Any] = {}
        errors: list[str] = []
        for index, item in enumerate(items):
            problem = _entry_problem(item)
            if problem is not None:
                errors.append(f"Entry at index {index}: {problem}")
                continue
            # Only entries that reach the database can break the insert of the whole batch.
            message: str = item["message"]
            if len(message) > self.max_message_chars:
                return _internal_error()
            if scan_nul:
                metadata = item.get("metadata")
                if "\x00" in message or (
                    isinstance(metadata, dict | list) and _contains_nul(metadata)
                ):
                    return _internal_error()
            if "lineNumber" in item:
                sent = item["lineNumber"]
                line_number = _line_number(sent)
                if line_number is _POISON:
                    return _internal_error()
                if line_number is not sent:
                    line_numbers[index] = line_number
            accepted.append(index)
        if accepted:
            batch = _Batch(body, None if not errors else accepted, line_numbers)
        with self._cond:
            if accepted:
                self._pending.append(batch)
            self._accepted += len(accepted)
            self._rejected += len(errors)
            self._cond.notify_all()
        if errors:
            return _json_answer(
                200, {"accepted": len(accepted), "rejected": len(errors), "errors": errors}
            )
        return _json_answer(200, {"accepted": len(accepted)})

    def _build_entries(self) -> None:
        """Turn stored bodies into entries, as the server stores them; call with _lock held."""
        for body, accepted, line_numbers in self._pending:
            parsed = _parse_json(body)
            items = [parsed] if isinstance(parsed, dict) else parsed
            for index in range(len(items)) if accepted is None else accepted:
                item = items[index]
                entry = {name: item[name] for name in _KNOWN_FIELDS if name in item}
                if index in line_numbers:
                    entry["lineNumber"] = line_numbers[index]
                self._entries.append(entry)
        self._pending.clear()


def _discard(rfile: IO[bytes], length: int) -> None:
    """Read and drop a body, so that closing afterwards does not reset the connection."""
    while length > 0:
        chunk = rfile.read(min(length, 65536))
        if not chunk:
            raise ConnectionAbortedError("closed inside the request body")
        length -= len(chunk)
