"""Exit: every way out of a process finishes within shutdown_timeout plus a margin.

Failure catalog item 10. A program logs and then leaves by returning from its
main code, sys.exit(), SIGTERM with a handler that calls sys.exit(), or
os._exit() (no atexit at all), against a server that answers, refuses
connections, accepts and never answers, or while its shipper is dead. Exit
must never hang; with a server that answers, every entry arrives, also after
os._exit(), because the shipper holds what was written before the exit.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import shipper_pids
from fleet_helpers import Programs, program_env, record, wait_gone, write_program
from logwell import Logwell
from logwell.testing import IngestServer

pytestmark = pytest.mark.fork

SHUTDOWN_TIMEOUT = 1.0
#: Interpreter start-up is not part of exit; this covers atexit and interpreter teardown.
MARGIN = 3.0
N = 200

EXIT_PROGRAM = """
    import json, os, signal, sys, time

    import fleetenv

    MODE, FAULT, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = fleetenv.client(shutdown_timeout=float(sys.argv[4]), batch_size=20)


    def gone(pid):
        # Every thread of pid has exited, so its end of the pipe is closed. The main
        # thread turns zombie before the others are gone, and they share the file
        # table: only the task list tells when the last one has left.
        try:
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            return zombie and os.listdir(f"/proc/{pid}/task") == [str(pid)]
        except OSError:
            return True


    def main():
        for i in range(N):
            client.info("entry", {"i": i})
        shippers = fleetenv.shipper_children()
        if FAULT == "dead-shipper":
            assert client.flush(10.0)
            os.kill(shippers[0], signal.SIGKILL)
            while not gone(shippers[0]):
                time.sleep(0.001)
            # The first of these meets the closed pipe and is lost; a replacement takes the rest.
            for i in range(N, N + 10):
                client.info("entry", {"i": i})
            shippers += fleetenv.shipper_children()
        if MODE == "sigterm":
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
            print("READY " + json.dumps(shippers), flush=True)
            while True:
                time.sleep(60)
        print("READY " + json.dumps(shippers), flush=True)
        if MODE == "sys.exit":
            sys.exit(0)
        if MODE == "os._exit":
            os._exit(0)


    main()
"""

MODES = ["return", "sys.exit", "sigterm", "os._exit"]
FAULTS = ["normal", "refuse", "hang", "dead-shipper"]


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.timeout(60)
def test_exit_is_bounded(
    mode: str, fault: str, server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Leaving by this mode under this fault takes at most shutdown_timeout plus a margin."""
    if fault == "refuse":
        server.refuse_connections()
    elif fault == "hang":
        server.hang_all()
    script = write_program(tmp_path, "exit.py", EXIT_PROGRAM)
    program = programs.python(script, program_env(server), mode, fault, str(N),
                              str(SHUTDOWN_TIMEOUT))
    shippers = json.loads(program.expect("READY", 30.0))
    started = time.monotonic()
    if mode == "sigterm":
        program.process.send_signal(signal.SIGTERM)
    code = program.wait(SHUTDOWN_TIMEOUT + MARGIN + 10.0)
    took = time.monotonic() - started
    # Orphaned or not, the shippers finish on their own within the same bound: at most
    # shutdown_timeout of draining after the program let go of the pipe.
    for pid in shippers:
        wait_gone(pid, 2 * SHUTDOWN_TIMEOUT + MARGIN + 5.0)
    shippers_gone = time.monotonic() - started
    _, err = program.finish(5.0)  # the shippers held the program's stderr open
    assert code == 0, f"exit status {code}; stderr: {err[-3000:]}"
    assert err == ""
    assert took <= SHUTDOWN_TIMEOUT + MARGIN, f"exit took {took:.2f}s"
    assert shippers_gone <= 2 * SHUTDOWN_TIMEOUT + MARGIN, f"a shipper took {shippers_gone:.2f}s"
    server.release()
    sent = N + (10 if fault == "dead-shipper" else 0)
    delivered = server.accepted_count
    if fault in ("normal", "dead-shipper"):
        indices = sorted(e["metadata"]["i"] for e in server.entries)
        assert len(indices) == len(set(indices))
        # The entry that met the dead shipper's closed pipe is the only one missing.
        expected = sent - (1 if fault == "dead-shipper" else 0)
        assert delivered == expected, f"{delivered} of {expected} arrived"
    else:
        assert delivered == 0
    assert not shipper_pids() & set(shippers)
    record(f"exit-{mode}-{fault}", sent=sent, delivered=delivered, lost=sent - delivered,
           exit_s=round(took, 2), shippers_gone_s=round(shippers_gone, 2))


@pytest.mark.timeout(60)
def test_shutdown_against_a_server_that_never_answers_counts_what_it_held(
    server: IngestServer,
) -> None:
    """shutdown() keeps its timeout while a request hangs; the shipper then counts it failed."""
    server.hang_all()
    client = Logwell({"api_key": server.api_key, "endpoint": server.endpoint,
                      "flush_interval": 0.05, "shutdown_timeout": SHUTDOWN_TIMEOUT})
    for i in range(50):
        client.info("held", {"i": i})
    assert server.wait_for_requests(1, 10.0)
    shipper = client.stats()["shipper"]["pid"]
    started = time.monotonic()
    assert client.shutdown() is False
    took = time.monotonic() - started
    assert took <= SHUTDOWN_TIMEOUT + 0.5
    assert wait_gone(shipper, SHUTDOWN_TIMEOUT + MARGIN)
    gone = time.monotonic() - started
    stats = client.stats()
    assert stats["failed"] == 50 and stats["backlog"] == 0 and stats["delivered"] == 0
    server.release()
    record("shutdown-hang-in-process", sent=50, delivered=0, lost=50, exit_s=round(took, 2),
           shippers_gone_s=round(gone, 2))
