"""Celery: a real worker, prefork pool, concurrency 4, one task per child.

Failure catalog items 3, 6 and 7. The broker is kombu's filesystem transport in
``tmp_path``, so nothing but Celery itself is needed. A module-level client
created in the worker's main process is shared by the billiard children it
forks; a client created at first use inside a (daemonic) pool child starts a
shipper of its own. Children leave through os._exit after their one task; what
they logged still arrives, exactly once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import shipper_pids, wait_for
from fleet_helpers import APPS, BIN, PYTHON, Programs, program_env, record, session_members
from logwell.testing import IngestServer

pytestmark = [pytest.mark.fork, pytest.mark.fleet]

TASKS = 25  # of each kind: 50 tasks


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


@pytest.mark.timeout(150)
def test_celery_prefork_worker_delivers_every_task_entry_once(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """25 shared-client and 25 lazy-client tasks on a recycling prefork pool: each arrives once."""
    before = shipper_pids()
    env = program_env(server, shutdown_timeout=2.0)
    env["CELERY_FS_BROKER"] = str(tmp_path / "broker")
    worker = programs.start(
        [str(BIN / "celery"), "-A", "celery_app", "worker", "--pool", "prefork",
         "--concurrency", "4", "--max-tasks-per-child", "1", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
         "--hostname", "fleet@localhost"],
        env, cwd=APPS)
    sender = programs.start([PYTHON, str(APPS / "celery_send.py"), str(TASKS)], env, cwd=APPS)
    sender.expect("SENT", 60.0)
    assert sender.wait(30.0) == 0, sender.finish(1.0)[1][-3000:]
    sent_at = time.monotonic()
    arrived = server.wait_for_entries(2 * TASKS, 90.0)
    took = time.monotonic() - sent_at
    assert arrived, (f"{server.accepted_count} of {2 * TASKS} entries arrived; "
                     f"worker stderr: {worker.finish(1.0)[1][-3000:]}")

    stopped = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait(30.0)
    exit_s = time.monotonic() - stopped
    _, err = worker.finish(5.0)
    assert code == 0, err[-3000:]
    assert wait_for(lambda: not session_members(worker.pid), 10.0), "a celery process was left"
    assert wait_for(lambda: not (shipper_pids() - before), 10.0), "a shipper was left"

    entries = server.entries
    kinds = Counter((e["metadata"]["how"], e["metadata"]["task"]) for e in entries)
    expected = {(how, task) for how in ("shared", "lazy") for task in range(TASKS)}
    assert set(kinds) == expected, "every task's entry arrives"
    assert max(kinds.values()) == 1, "and only once"
    shared_pids = {e["metadata"]["worker_pid"] for e in entries if e["metadata"]["how"] == "shared"}
    assert len(shared_pids) > 4, "pool children were meant to be replaced after each task"
    for entry in entries:
        assert entry["service"] == ("celery-app" if entry["metadata"]["how"] == "shared"
                                    else "celery-lazy")
    record("celery-prefork", sent=2 * TASKS, delivered=len(entries),
           lost=2 * TASKS - len(entries), pool_children=len(
               {e["metadata"]["worker_pid"] for e in entries}),
           all_arrived_s=round(took, 2), worker_exit_s=round(exit_s, 2))
