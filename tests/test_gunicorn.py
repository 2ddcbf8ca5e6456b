"""Gunicorn: the real ``gunicorn`` command, 4 sync workers recycled by --max-requests.

Failure catalog items 1, 4, 5, 7 and 10. With ``--preload`` the client is
created in the master and all workers share its one shipper; without it every
worker creates its own client and shipper at import. Either way every
request's entry arrives exactly once, attributed to the worker that served it,
recycled workers lose nothing, and SIGTERM to the master leaves no process.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import shipper_pids, wait_for
from fleet_helpers import (
    APPS,
    BIN,
    Programs,
    children_of,
    program_env,
    record,
    session_members,
)
from logwell.testing import IngestServer

pytestmark = [pytest.mark.fork, pytest.mark.fleet]

REQUESTS = 300
WORKERS = 4
SHUTDOWN_TIMEOUT = 2.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the Unix socket Gunicorn binds, so that no TCP port can collide."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def get(path: Path, target: str) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def listening(path: Path) -> bool:
    try:
        return get(path, "/?id=probe")[0] == 200
    except OSError:
        return False


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
@pytest.mark.timeout(120)
def test_gunicorn_fleet_delivers_every_request_once(
    preload: bool, server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """300 requests to 4 recycling workers: each entry arrives once, from the worker serving it."""
    before = shipper_pids()
    sock = tmp_path / "gunicorn.sock"
    args = [
        str(BIN / "gunicorn"), "--workers", str(WORKERS), "--worker-class", "sync",
        "--max-requests", "20", "--max-requests-jitter", "5",
        "--bind", f"unix:{sock}", "--chdir", str(APPS), "--graceful-timeout", "15",
        "--log-level", "warning", *(["--preload"] if preload else []), "gunicorn_app:app",
    ]
    program = programs.start(args, program_env(server, shutdown_timeout=SHUTDOWN_TIMEOUT),
                             cwd=tmp_path)
    assert wait_for(lambda: listening(sock), 30.0), program.finish(1.0)[1][-3000:]

    served: dict[str, int] = {}
    for n in range(REQUESTS):
        status, body = get(sock, f"/?id=r{n}")
        assert status == 200
        served[f"r{n}"] = int(body)

    master = program.pid
    fleet_shippers = shipper_pids() - before
    if preload:
        # One shipper for the whole fleet: the master's; no worker starts one.
        assert len(fleet_shippers) == 1
        assert children_of(master) & fleet_shippers == fleet_shippers
    else:
        # One shipper per worker, owned by that worker (a worker that just booted may
        # still be importing the app, hence the wait).
        def one_shipper_per_worker() -> bool:
            shippers = shipper_pids() - before
            workers = children_of(master) - shippers
            return len(workers) == WORKERS and all(
                len(children_of(worker) & shippers) == 1 for worker in workers)

        assert wait_for(one_shipper_per_worker, 20.0)

    stopped = time.monotonic()
    os.kill(master, signal.SIGTERM)
    code = program.wait(30.0)
    exit_s = time.monotonic() - stopped
    delivered_at_exit = server.accepted_count
    assert code == 0, program.finish(1.0)[1][-3000:]
    assert wait_for(lambda: not session_members(master), 10.0), "a gunicorn process was left"
    assert wait_for(lambda: not (shipper_pids() - before), 10.0), "a shipper was left"

    assert server.wait_for_entries(REQUESTS + 1, 10.0)
    entries = [e for e in server.entries if e["metadata"]["request_id"] != "probe"]
    ids = Counter(e["metadata"]["request_id"] for e in entries)
    assert set(ids) == set(served), "every request's entry arrives"
    assert max(ids.values()) == 1, "and only once"
    for entry in entries:
        assert entry["metadata"]["worker_pid"] == served[entry["metadata"]["request_id"]]
        assert entry["service"] == "gunicorn-app"
    workers_used = len(set(served.values()))
    assert workers_used > WORKERS, "workers were meant to recycle during the test"
    record(f"gunicorn-{'preload' if preload else 'no-preload'}", sent=REQUESTS,
           delivered=len(entries), lost=REQUESTS - len(entries), workers=workers_used,
           delivered_when_master_exited=delivered_at_exit - 1, master_exit_s=round(exit_s, 2))
