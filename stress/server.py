"""The bundled ingest server in a process of its own, driven over a line-based control pipe.

A server inside the measured process would take the GIL from the code being measured,
so ``ServerProcess`` runs ``python -m stress.server --control`` and talks to it with one
JSON command per line on its stdin and one JSON answer per line on its stdout.

``StressServer`` adds to ``logwell.testing.IngestServer`` what a stress run needs and the
public API does not have: faults that hold for a span of time (``script()`` queues a
fixed number of answers) and counting of the harness's unique ids as entries are
accepted, so that memory stays flat over a long run. It hooks two internal methods
(``_serve`` and ``_process``); ``tests/test_stress.py`` notices if they change.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import orjson

from logwell import testing
from logwell.testing import TEST_API_KEY, IngestServer, Reply
from stress.faults import Fault

#: Metadata keys that identify an entry of a stress run: its stream and its number in it.
STREAM_KEY = "stress_stream"
SEQ_KEY = "stress_seq"
_LINGER_RESET = struct.pack("ii", 1, 0)
#: Bodies the base server keeps for ``entries`` are dropped this often; ids are counted apart.
_CLEAR_EVERY = 2.0


class IdCounter:
    """How often each (stream, seq) arrived, one byte per id: enough for a long run."""

    def __init__(self) -> None:
        self._streams: dict[int, bytearray] = {}
        self.received = 0
        self.foreign = 0  # accepted entries without stress ids

    def add(self, stream: int, seq: int) -> None:
        counts = self._streams.get(stream)
        if counts is None:
            counts = self._streams[stream] = bytearray()
        if seq >= len(counts):
            counts.extend(bytes(max(seq + 1 - len(counts), len(counts))))
        if counts[seq] < 255:
            counts[seq] += 1
        self.received += 1

    def summary(self) -> dict[str, Any]:
        """Distinct ids and duplicates, overall and per stream."""
        streams = {}
        distinct = 0
        for stream, counts in self._streams.items():
            seen = len(counts) - counts.count(0)
            distinct += seen
            streams[str(stream)] = seen
        return {"received": self.received, "distinct": distinct,
                "duplicates": self.received - distinct, "foreign": self.foreign,
                "streams": streams}


class StressServer(IngestServer):
    """An IngestServer with timed faults and id counting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids = IdCounter()
        self.processed = 0  # requests that reached the contract (not hung, not refused)
        self._ids_lock = threading.Lock()
        self._storm: Reply | None = None
        self._local = threading.local()

    # -- hooks into IngestServer ------------------------------------------------------

    def _serve(self, conn: Any) -> None:
        self._local.sock = conn.sock  # so that a "reset" storm can reset this connection
        super()._serve(conn)

    def _process(self, method: str, target: str, headers: dict[str, str], body: bytes | None,
                 parsed: Any) -> Any:
        storm = self._storm
        with self._ids_lock:
            self.processed += 1
        if storm is not None:
            if storm.reset:
                sock: socket.socket = self._local.sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                raise ConnectionResetError("reset storm")
            answer = testing._scripted_answer(storm)
            if storm.headers:
                answer = answer._replace(headers=list(storm.headers.items()))
            return answer
        answer = super()._process(method, target, headers, body, parsed)
        if answer.status == 200 and isinstance(parsed, list | dict):
            self._count(parsed if isinstance(parsed, list) else [parsed], answer.body)
        return answer

    def _count(self, items: list[Any], answer_body: bytes) -> None:
        rejected: set[int] = set()
        if b'"rejected"' in answer_body:
            for error in orjson.loads(answer_body).get("errors", []):
                with contextlib.suppress(ValueError, IndexError):
                    rejected.add(int(error.split("index ", 1)[1].split(":", 1)[0]))
        with self._ids_lock:
            for index, item in enumerate(items):
                if index in rejected:
                    continue
                metadata = item.get("metadata")
                try:
                    self.ids.add(int(metadata[STREAM_KEY]), int(metadata[SEQ_KEY]))
                except (TypeError, KeyError, ValueError):
                    self.ids.foreign += 1

    # -- faults -----------------------------------------------------------------------

    def set_storm(self, kind: str | None, arg: float | None = None) -> None:
        """Answer every request this way from now on (None: normally again)."""
        if kind is None:
            self._storm = None
        elif kind == "reset":
            self._storm = Reply(reset=True)
        elif kind == "429":
            self._storm = Reply(429, headers={"Retry-After": f"{arg or 1:g}"})
        else:
            self._storm = Reply(int(kind))

    def fault(self, kind: str, active: bool, arg: float | None) -> None:
        """Switch one fault kind on or off."""
        if kind == "outage":
            self.refuse_connections() if active else self.accept_connections()
        elif kind == "hang":
            self.hang_all() if active else self.release()
        elif kind == "slow":
            self.set_delay((arg or 1.0) if active else 0.0)
        else:
            self.set_storm(kind if active else None, arg)

    def counts(self) -> dict[str, Any]:
        with self._ids_lock:
            summary = self.ids.summary()
            summary["requests"] = self.processed
        summary["accepted_now"] = self.accepted_count
        return summary

    def trim(self) -> None:
        """Forget stored bodies: the ids are counted already, and a soak must not grow."""
        self.clear()


def _handle(server: StressServer, command: dict[str, Any]) -> dict[str, Any]:
    op = command.get("op")
    if op == "fault":
        server.fault(command["kind"], bool(command["active"]), command.get("arg"))
        return {"ok": True}
    if op == "counts":
        return {"ok": True, **server.counts()}
    if op == "ping":
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}


def _control_loop(server: StressServer, commands: IO[bytes], answers: IO[bytes]) -> None:
    """Serve commands until ``stop`` or end of input; trim stored bodies between them."""
    next_trim = time.monotonic() + _CLEAR_EVERY
    fd = commands.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], _CLEAR_EVERY)
        if time.monotonic() >= next_trim:
            server.trim()
            next_trim = time.monotonic() + _CLEAR_EVERY
        if not ready:
            continue
        line = commands.readline()
        if not line:
            return
        try:
            command = orjson.loads(line)
            if command.get("op") == "stop":
                answers.write(orjson.dumps({"ok": True, **server.counts()}) + b"\n")
                answers.flush()
                return
            answer = _handle(server, command)
        except Exception as exc:  # a bad command must not kill the server mid-run
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answers.write(orjson.dumps(answer) + b"\n")
        answers.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m stress.server``: the bundled server, controlled or standalone."""
    parser = argparse.ArgumentParser(prog="python -m stress.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--control", action="store_true",
                        help="take JSON commands on stdin (used by the harness)")
    args = parser.parse_args(argv)
    if not (args.host.startswith("127.") or args.host in ("::1", "localhost")):
        parser.error("the bundled server binds loopback addresses only")
    server = StressServer(TEST_API_KEY, host=args.host, port=args.port).start()
    hello = {"endpoint": server.endpoint, "api_key": server.api_key, "pid": os.getpid()}
    out = sys.stdout.buffer
    out.write(orjson.dumps(hello) + b"\n")
    out.flush()
    try:
        if args.control:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops us over the pipe
            _control_loop(server, sys.stdin.buffer, out)
        else:
            signal.signal(signal.SIGTERM, _interrupt)
            signal.signal(signal.SIGINT, _interrupt)  # even when started in the background
            print(f"serving {server.endpoint} (api key {server.api_key}); Ctrl-C stops",
                  file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(_CLEAR_EVERY)
                    server.trim()
    finally:
        server.stop()
    return 0


class ServerProcess:
    """The harness's handle on ``python -m stress.server --control``."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stress.server", "--control"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            start_new_session=True,
        )
        hello = self._read(timeout=30.0)
        self.endpoint: str = hello["endpoint"]
        self.api_key: str = hello["api_key"]
        self.pid: int = hello["pid"]
        self.final: dict[str, Any] | None = None

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line:
            self.kill()
            raise RuntimeError("the stress server did not answer (see its stderr above)")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def command(self, op: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(orjson.dumps({"op": op, **fields}) + b"\n")
        self._proc.stdin.flush()
        answer = self._read(timeout)
        if not answer.get("ok"):
            raise RuntimeError(f"stress server: {answer.get('error')}")
        return answer

    def fault(self, fault: Fault, active: bool) -> None:
        self.command("fault", kind=fault.kind, active=active, arg=fault.arg)

    def set_fault(self, kind: str, active: bool, arg: float | None = None) -> None:
        self.command("fault", kind=kind, active=active, arg=arg)

    def counts(self) -> dict[str, Any]:
        return self.command("counts")

    def stop(self) -> dict[str, Any]:
        """Stop the server; return its final counts."""
        if self.final is None:
            try:
                self.final = self.command("stop")
            finally:
                try:
                    self._proc.wait(15.0)
                except subprocess.TimeoutExpired:
                    pass
                self.kill()
        return self.final

    def kill(self) -> None:
        """Stop the process at once (idempotent) and close our ends of its pipes."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except Exception:
            self.kill()


@contextlib.contextmanager
def bundled_server() -> Iterator[ServerProcess]:
    """A running bundled server in its own process, stopped on exit."""
    with ServerProcess() as server:
        yield server


if __name__ == "__main__":
    sys.exit(main())
