"""Supervision: a shipper that dies or stops, an owner that dies, a producer killed mid-write.

Failure catalog items 11 to 13. Log calls never wait for a shipper that is gone;
what it took with it is counted (``dropped["shipper_lost"]``) and reported
through ``on_error``; a replacement starts with the next log call. An orphaned
shipper drains what it holds and exits once the last process holding the pipe
is gone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_for
from fleet_helpers import Programs, program_env, record, wait_gone, write_program
from logwell import Logwell, LogwellError
from logwell.errors import LogwellErrorCode
from logwell.testing import IngestServer

pytestmark = pytest.mark.fork

#: No log call may take this long; a sanity bound, not a benchmark.
CALL_BOUND = 1.0


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


class Producer:
    """A thread that logs steadily and remembers the slowest call."""

    def __init__(self, client: Logwell, phase: str, pause: float = 0.001,
                 message: str = "steady") -> None:
        self.client = client
        self.phase = phase
        self.pause = pause
        self.message = message
        self.count = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.client.info(self.message, {"phase": self.phase, "i": self.count})
            self.slowest = max(self.slowest, time.perf_counter() - started)
            self.count += 1
            if self.pause:
                self._stop.wait(self.pause)


def check_accounting(client: Logwell, server: IngestServer) -> dict[str, Any]:
    """The stats identity holds and 'delivered' is exactly what the server stored."""
    stats = client.stats()
    assert stats["backlog"] == 0
    assert stats["logged"] == (stats["delivered"] + stats["rejected"] + stats["failed"]
                               + sum(stats["dropped"].values()))
    assert stats["delivered"] == len(server.entries)
    return stats


@pytest.mark.timeout(60)
def test_killed_shipper_is_replaced_and_its_loss_counted(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Shipper SIGKILLed mid-stream: calls stay fast, it is replaced, the loss is counted."""
    errors: list[LogwellError] = []
    client = make_client(batch_size=10, on_error=errors.append)
    for i in range(100):
        client.info("before", {"phase": "A", "i": i})
    assert client.flush(10.0)
    # Make the shipper hold entries it cannot deliver: a request hangs, more wait behind it.
    requests = len(server.requests)
    server.hang_all()
    for i in range(20):
        client.info("held", {"phase": "B", "i": i})
    assert server.wait_for_requests(requests + 1, 10.0)
    old = client.stats()["shipper"]["pid"]
    with Producer(client, "C") as producer:
        wait_for(lambda: producer.count >= 50, 10.0)
        os.kill(old, signal.SIGKILL)
        assert wait_gone(old, 5.0)
        server.release()  # the hung request dies unanswered: the server stored none of it
        assert wait_for(lambda: client.stats()["shipper"]["restarts"] == 1, 10.0)
        seen = producer.count
        assert wait_for(lambda: producer.count >= seen + 200, 10.0)
    assert client.flush(10.0)
    stats = check_accounting(client, server)
    new = stats["shipper"]["pid"]
    assert new not in (0, old)
    assert stats["shipper"]["restarts"] == 1
    lost = stats["dropped"]["shipper_lost"]
    phases = Counter(e["metadata"]["phase"] for e in server.entries)
    assert phases["A"] == 100
    assert phases["B"] == 0
    # At least the 20 held entries and the write that met the closed pipe were lost.
    assert lost >= 21
    assert lost == 20 + producer.count - phases["C"]
    assert producer.slowest < CALL_BOUND, f"a log call took {producer.slowest:.3f}s"
    assert wait_for(lambda: any(e.code is LogwellErrorCode.NETWORK_ERROR for e in errors), 5.0)
    lost_reports = [str(e) for e in errors if e.code is LogwellErrorCode.NETWORK_ERROR]
    assert any(f"pid {old}" in text and "lost" in text for text in lost_reports), lost_reports
    record("shipper-sigkill", sent=stats["logged"], delivered=stats["delivered"], lost=lost,
           slowest_call_ms=round(producer.slowest * 1000, 1))


BIG = "x" * 2000  # a dozen fill the pipe's 1 MiB a few hundred times over


@pytest.mark.timeout(60)
def test_stopped_shipper_does_not_block_callers_and_drops_are_counted(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Shipper SIGSTOPped, then SIGCONTed: calls never block, a full pipe's drops are counted."""
    errors: list[LogwellError] = []
    client = make_client(batch_size=100, on_error=errors.append)
    client.info("warm up", {"phase": "warm"})
    assert client.flush(10.0)
    pid = client.stats()["shipper"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        slowest = 0.0
        for i in range(3000):  # ~6 MB into a 1 MiB pipe, in well under STALL_TIMEOUT
            started = time.perf_counter()
            client.info(BIG, {"phase": "stopped", "i": i})
            slowest = max(slowest, time.perf_counter() - started)
        dropped = client.stats()["dropped"]["queue_full"]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert dropped > 0
    assert slowest < CALL_BOUND
    assert client.flush(15.0)
    stats = check_accounting(client, server)
    assert stats["shipper"]["pid"] == pid and stats["shipper"]["restarts"] == 0
    assert stats["dropped"]["queue_full"] == dropped == 3001 - stats["delivered"]
    assert wait_for(lambda: any(e.code is LogwellErrorCode.QUEUE_OVERFLOW for e in errors), 5.0)
    record("shipper-sigstop-sigcont", sent=3001, delivered=stats["delivered"], lost=dropped,
           slowest_call_ms=round(slowest * 1000, 1))


@pytest.mark.timeout(60)
def test_shipper_stopped_for_good_is_replaced(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A shipper stopped past STALL_TIMEOUT is killed and replaced; callers never block."""
    errors: list[LogwellError] = []
    client = make_client(batch_size=100, on_error=errors.append)
    client.info("warm up", {"phase": "warm"})
    assert client.flush(10.0)
    old = client.stats()["shipper"]["pid"]
    os.kill(old, signal.SIGSTOP)
    try:
        with Producer(client, "stopped", pause=0.002, message=BIG) as producer:
            assert wait_for(lambda: client.stats()["shipper"]["restarts"] == 1, 20.0)
            seen = producer.count
            assert wait_for(lambda: producer.count >= seen + 100, 10.0)
    finally:
        if not wait_gone(old, 5.0):  # the replacement kills the stopped shipper
            os.kill(old, signal.SIGKILL)
            pytest.fail("the stopped shipper was left running")
    assert client.flush(10.0)
    stats = check_accounting(client, server)
    assert stats["shipper"]["pid"] not in (0, old)
    assert stats["dropped"]["queue_full"] > 0
    assert producer.slowest < CALL_BOUND
    assert wait_for(lambda: any("stopped answering" in str(e) for e in errors), 5.0)
    lost = sum(stats["dropped"].values())
    record("shipper-sigstop-replaced", sent=stats["logged"], delivered=stats["delivered"],
           lost=lost, slowest_call_ms=round(producer.slowest * 1000, 1))


OWNER_PROGRAM = """
    import json, os, sys, time

    import fleetenv

    N, FORK_CHILD = int(sys.argv[1]), sys.argv[2] == "fork-child"
    client = fleetenv.client(batch_size=10, shutdown_timeout=3.0)
    client.info("first", {"src": "owner", "i": -1})
    assert client.flush(10.0)
    shipper = client.stats()["shipper"]["pid"]
    child = None
    if FORK_CHILD:
        owner_alive_r, owner_alive_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(owner_alive_w)
            os.read(owner_alive_r, 1)  # end of file: the owner is dead
            for i in range(30):
                client.info("after the owner died", {"src": "child", "i": i})
            os._exit(0)
        os.close(owner_alive_r)
    for i in range(N):
        client.info("held", {"src": "owner", "i": i})
    print("READY " + json.dumps({"shipper": shipper, "child": child}), flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("fleet", ["alone", "fork-child"])
@pytest.mark.timeout(60)
def test_orphaned_shipper_delivers_what_it_holds_and_exits(
    fleet: str, server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Owner SIGKILLed: its shipper delivers what it holds and what survivors log, then exits."""
    server.set_delay(0.05)  # 10 batches take half a second: the shipper holds them at the kill
    script = write_program(tmp_path, "owner.py", OWNER_PROGRAM)
    program = programs.python(script, program_env(server), "100", fleet)
    ready = json.loads(program.expect("READY", 30.0))
    shipper, child = ready["shipper"], ready["child"]
    held = len(server.entries)
    killed = time.monotonic()
    os.kill(program.pid, signal.SIGKILL)
    assert program.wait(5.0) == -signal.SIGKILL
    if child is not None:
        assert wait_gone(child, 10.0), "the forked child should exit once the owner is gone"
    assert wait_gone(shipper, 3.0 + 5.0), "the orphaned shipper must exit within a bound"
    gone_after = time.monotonic() - killed
    entries = server.entries
    sources = Counter(e["metadata"]["src"] for e in entries)
    assert sources["owner"] == 101, "everything the owner had logged arrives"
    assert sources["child"] == (30 if child is not None else 0)
    assert len({(e["metadata"]["src"], e["metadata"]["i"]) for e in entries}) == len(entries)
    sent = 101 + (30 if child is not None else 0)
    record(f"owner-sigkill-{fleet}", sent=sent, delivered=len(entries), lost=sent - len(entries),
           held_at_kill=sent - held, shipper_exit_s=round(gone_after, 2))


MID_WRITE_PROGRAM = """
    import json, os, random, select, signal, sys, time

    import fleetenv
    from logwell._channel import Producer

    VICTIMS = int(sys.argv[1])
    client = fleetenv.client(batch_size=20)
    client.info("start", {"src": "parent", "i": -1})
    assert client.flush(10.0)
    fd = client._pipeline._channel.fd
    big = lambda tag: tag + ":" + "y" * 60_000  # about 15 frames of PIPE_BUF

    # One producer dies after exactly half of a large entry's slices.
    pid = os.fork()
    if pid == 0:
        data = json.dumps({"level": "info", "message": big("half"),
                           "timestamp": "2024-01-01T00:00:00.000Z"}).encode()
        frames = Producer(os.getpid()).slices(data, 0)
        for frame in frames[: len(frames) // 2]:
            os.write(fd, frame)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)

    # Others are killed at random moments while they log large entries flat out.
    victims = []
    for v in range(VICTIMS):
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(started_r)
            n = 0
            while True:
                client.info(big("victim"), {"src": "victim", "pid": os.getpid(), "n": n})
                n += 1
                if n == 2:
                    os.write(started_w, b"x")
        os.close(started_w)
        select.select([started_r], [], [], 20)
        time.sleep(random.random() * 0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(started_r)
        victims.append(pid)

    # The survivors are not wedged: the shipper gets through what the victims left in the
    # pipe, and small and large entries keep flowing.
    flushed = client.flush(20.0)
    for i in range(100):
        client.info(big("after") if i % 2 else "small", {"src": "parent", "i": i})
        if i % 10 == 9:  # paced, so that a full pipe cannot be the reason for a loss
            flushed = client.flush(20.0) and flushed
    print("RESULT " + json.dumps({"victims": victims, "flushed": flushed,
                                  "stats": client.stats()}))
"""


@pytest.mark.timeout(90)
def test_producer_killed_mid_write_wedges_nobody(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Producers SIGKILLed halfway through a sliced entry wedge neither shipper nor others."""
    script = write_program(tmp_path, "midwrite.py", MID_WRITE_PROGRAM)
    program = programs.python(script, program_env(server), "5")
    result = json.loads(program.expect("RESULT", 80.0))
    assert program.wait(20.0) == 0, program.finish(1.0)[1]
    assert result["flushed"] is True
    stats = result["stats"]
    assert stats["logged"] == stats["delivered"] == 101, stats
    entries = server.entries
    parent = [e for e in entries if e["metadata"]["src"] == "parent"]
    assert sorted(e["metadata"]["i"] for e in parent) == list(range(-1, 100))
    for entry in parent:
        if entry["message"].startswith("after"):
            assert entry["message"] == "after:" + "y" * 60_000
    # What the victims finished arrived whole; what they were cut off in never arrived.
    victims = [e for e in entries if e["metadata"]["src"] == "victim"]
    assert all(e["message"] == "victim:" + "y" * 60_000 for e in victims)
    assert not any(e["message"].startswith("half") for e in entries)
    keys = [(e["metadata"]["pid"], e["metadata"]["n"]) for e in victims]
    assert len(keys) == len(set(keys))
    assert {pid for pid, _ in keys} <= set(result["victims"])
    record("producer-killed-mid-write", sent=101, delivered=len(parent), lost=101 - len(parent),
           victims=len(result["victims"]), victim_entries_delivered=len(victims))


SIGPIPE_PROGRAM = """
    import os, signal, sys

    import fleetenv

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what many command-line tools do
    client = fleetenv.client()
    client.info("before", {"i": 0})
    assert client.flush(10.0)
    shipper = client.stats()["shipper"]["pid"]
    os.kill(shipper, signal.SIGKILL)

    def gone(pid):  # every thread has exited: the pipe's read end is closed
        try:
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            return zombie and os.listdir(f"/proc/{pid}/task") == [str(pid)]
        except OSError:
            return True

    while not gone(shipper):
        pass
    for i in range(1, 11):
        client.info("after", {"i": i})  # into the dead pipe: lost, and counted
    assert client.flush(10.0)  # notices the death (heartbeat, then the pid)
    for i in range(11, 16):
        client.info("replacement", {"i": i})
    assert client.flush(10.0)
    print("SURVIVED", client.stats()["dropped"]["shipper_lost"], flush=True)
"""


@pytest.mark.timeout(60)
def test_dead_shipper_does_not_kill_an_application_with_default_sigpipe(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """An application that restored SIGPIPE's default action survives its shipper's death."""
    script = write_program(tmp_path, "sigpipe.py", SIGPIPE_PROGRAM)
    program = programs.python(script, program_env(server))
    code = program.wait(30.0)
    out, err = program.finish(1.0)
    assert code == 0, f"exit status {code}; stderr: {err[-2000:]}"
    assert "SURVIVED 10" in out
    assert server.wait_for_entries(6, 10.0)
    assert sorted(e["metadata"]["i"] for e in server.entries) == [0, 11, 12, 13, 14, 15]
