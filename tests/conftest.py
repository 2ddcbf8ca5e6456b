"""Fixtures shared by the tests: a real ingest server, clients, and a leak check.

Every test runs against ``logwell.testing.IngestServer`` on loopback, through
real shipper processes; afterwards no shipper started during the test may
still be running.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logwell import Logwell
from logwell.testing import IngestServer

#: How long a shipper may take to exit after its last writer is gone.
SHIPPER_EXIT_TIMEOUT = 15.0
#: Inherited by every process this test run starts, shippers included, so that
#: the leak check sees this run's shippers and not those of another run.
RUN_MARKER = "LOGWELL_TEST_RUN"
os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)
_RUN_TAG = f"{RUN_MARKER}={os.environ[RUN_MARKER]}".encode()


def _ours(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return _RUN_TAG in f.read().split(b"\0")
    except OSError:
        return False


def shipper_pids() -> set[int]:
    """Pids of the logwell shipper processes started by this test run."""
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"logwell._shipper" in cmdline:
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != b"Z" and _ours(name):
                pids.add(int(name))
    return pids


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll a condition that has no event to wait on (another process's state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(autouse=True)
def no_leftover_shippers() -> Iterator[None]:
    """Fail a test that leaves a shipper process behind (and kill what it left)."""
    before = shipper_pids()
    yield
    if not wait_for(lambda: not (shipper_pids() - before), SHIPPER_EXIT_TIMEOUT, 0.05):
        left = shipper_pids() - before
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pytest.fail(f"shipper processes left running: {sorted(left)}")


@pytest.fixture
def server() -> Iterator[IngestServer]:
    """A fresh ingest server on loopback."""
    with IngestServer() as running:
        yield running


@pytest.fixture
def make_client(server: IngestServer) -> Iterator[Callable[..., Logwell]]:
    """Build clients for ``server``; each is shut down when the test ends."""
    clients: list[Logwell] = []

    def make(**options: Any) -> Logwell:
        config: dict[str, Any] = {
            "api_key": server.api_key,
            "endpoint": server.endpoint,
            "flush_interval": 0.05,
            "shutdown_timeout": 5.0,
            "retry_backoff": 0.01,
            "retry_backoff_max": 0.1,
        }
        config.update(options)
        client = Logwell(config)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(5.0)
