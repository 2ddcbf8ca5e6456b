"""Fork: a client created and used before os.fork() keeps working in every process.

Failure catalog items 1 to 4 and 9: log-then-fork, forks that skip the
``register_at_fork`` hooks, locks held by other threads at fork time, inherited
pipe ends, and Python 3.12's warning about forking a multi-threaded process.
The children of a process share its shipper through the inherited pipe.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import shipper_pids
from fleet_helpers import Programs, program_env, record, wait_child, write_program
from logwell import Logwell
from logwell.testing import IngestServer

pytestmark = pytest.mark.fork


@pytest.fixture
def programs() -> Iterator[Programs]:
    with Programs() as running:
        yield running


def fork_child(body: Callable[[], dict[str, Any]], report_fd: int, watchdog: float = 20.0) -> int:
    """Fork; the child runs ``body``, writes its JSON result to ``report_fd``, and _exits.

    The child never returns into pytest: whatever happens, it leaves through
    os._exit. faulthandler kills it (exit code 1, tracebacks on stderr) if it hangs.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        faulthandler.dump_traceback_later(watchdog, exit=True, file=sys.__stderr__)
        result = body()
        os.write(report_fd, (json.dumps(result) + "\n").encode())
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
        code = 3
    finally:
        os._exit(code)


def read_reports(read_fd: int) -> list[dict[str, Any]]:
    """Every JSON line the children wrote; call after the write end is closed everywhere."""
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.timeout(60)
def test_entries_logged_before_fork_arrive_once_and_children_share_the_shipper(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Entries logged before a fork arrive once; three children and the parent share one shipper."""
    before = shipper_pids()
    client = make_client(batch_size=20)
    for i in range(100):
        client.info("before fork", {"phase": "before", "i": i})
    # Nothing flushed: the pre-fork entries are in the pipe or the shipper when we fork.
    read_fd, write_fd = os.pipe()

    def child() -> dict[str, Any]:
        for i in range(50):
            client.info("in child", {"phase": "child", "pid": os.getpid(), "i": i})
        flushed = client.flush(10.0)
        stats = client.stats()
        # A worker's shutdown lets go of the shared shipper; it neither waits for it nor stops it.
        started = time.monotonic()
        shut = client.shutdown(10.0)
        return {"pid": os.getpid(), "flushed": flushed, "stats": stats, "shutdown": shut,
                "shutdown_s": time.monotonic() - started}

    children = [fork_child(child, write_fd) for _ in range(3)]
    os.close(write_fd)
    for i in range(50):
        client.info("after fork", {"phase": "after", "i": i})
    statuses = [wait_child(pid, 30.0) for pid in children]
    assert statuses == [0, 0, 0], "a child hung or failed; see its traceback on stderr"
    reports = read_reports(read_fd)
    assert client.flush(10.0)

    phases = Counter((e["metadata"]["phase"], e["metadata"].get("pid")) for e in server.entries)
    assert phases[("before", None)] == 100
    assert phases[("after", None)] == 50
    shipper = client.stats()["shipper"]["pid"]
    assert shipper in shipper_pids(), "the children's shutdown left the parent's shipper running"
    for report in reports:
        assert report["flushed"] is True
        assert report["shutdown"] is True and report["shutdown_s"] < 1.0
        assert phases[("child", report["pid"])] == 50
        stats = report["stats"]
        # A child counts only its own entries, and its flush waited until they were delivered.
        assert stats["logged"] == stats["delivered"] == 50
        assert stats["backlog"] == 0
        assert stats["shipper"]["pid"] == shipper
    keys = [(e["metadata"]["phase"], e["metadata"].get("pid"), e["metadata"]["i"])
            for e in server.entries]
    assert len(keys) == len(set(keys)) == 100 + 50 + 3 * 50
    parent = client.stats()
    assert parent["logged"] == parent["delivered"] == 150
    assert len(shipper_pids() - before) == 1
    record("log-then-fork", sent=300, delivered=len(keys), lost=300 - len(keys), children=3)


@pytest.mark.timeout(60)
def test_child_does_not_wait_for_locks_other_threads_held_at_fork(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A child forked while another thread held every logwell lock still logs and flushes."""
    client = make_client(batch_size=10, on_error=lambda exc: None, on_flush=lambda n: None)
    client.info("warm up")
    assert client.flush(10.0)
    pipeline = client._pipeline
    locks = [pipeline._lock, pipeline._dispatch_lock, pipeline._inbox_lock]
    holding, release = threading.Event(), threading.Event()

    def hold_locks() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait()
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold_locks)
    holder.start()
    assert holding.wait(5.0)
    read_fd, write_fd = os.pipe()

    def child() -> dict[str, Any]:
        for i in range(20):
            client.info("child under held locks", {"pid": os.getpid(), "i": i})
        return {"pid": os.getpid(), "flushed": client.flush(10.0), "stats": client.stats()}

    try:
        pid = fork_child(child, write_fd, watchdog=15.0)
    finally:
        release.set()
        holder.join()
    os.close(write_fd)
    assert wait_child(pid, 30.0) == 0, "the child hung on an inherited lock (see stderr)"
    [report] = read_reports(read_fd)
    assert report["flushed"] is True
    assert report["stats"]["delivered"] == 20
    assert server.wait_for_entries(21, 10.0)
    assert Counter(e.get("metadata", {}).get("pid") for e in server.entries)[pid] == 20


@pytest.mark.timeout(60)
def test_a_childs_flush_waits_for_its_own_entries_only(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A child's flush returns once its entries are delivered, while the parent keeps logging."""
    flushed_in_parent: list[int] = []
    client = make_client(batch_size=10, on_flush=flushed_in_parent.append)
    client.info("warm up")
    assert client.flush(10.0)
    server.set_delay(0.02)  # every batch costs time, so the flush has something to wait for
    stop = threading.Event()
    parent_logged = [1]

    def parent_logs() -> None:
        while not stop.is_set():
            client.info("parent", {"who": "parent", "i": parent_logged[0]})
            parent_logged[0] += 1
            stop.wait(0.001)

    logger = threading.Thread(target=parent_logs)
    logger.start()
    read_fd, write_fd = os.pipe()

    def child() -> dict[str, Any]:
        for i in range(40):
            client.info("child", {"who": "child", "pid": os.getpid(), "i": i})
        started = time.monotonic()
        flushed = client.flush(15.0)
        took = time.monotonic() - started
        return {"pid": os.getpid(), "flushed": flushed, "took": took, "stats": client.stats()}

    try:
        pid = fork_child(child, write_fd)
        os.close(write_fd)
        status = wait_child(pid, 30.0)
    finally:
        stop.set()
        logger.join()
    assert status == 0
    [report] = read_reports(read_fd)
    assert report["flushed"] is True
    stats = report["stats"]
    assert stats["logged"] == stats["delivered"] == 40 and stats["backlog"] == 0
    # 4 batches of the child's entries and those of the parent queued before them; the
    # parent's stream that goes on behind the child's flush marker must not hold it up.
    assert report["took"] < 10.0
    server.set_delay(0.0)
    assert client.flush(15.0)
    counts = Counter(e["metadata"]["who"] for e in server.entries if "metadata" in e)
    assert counts["child"] == 40
    parent = client.stats()
    assert parent["logged"] == parent_logged[0]  # the warm-up entry plus the thread's
    assert parent["delivered"] == counts["parent"] + 1
    # Delivery notes go to the process that logged the entries, never to its parent.
    assert sum(flushed_in_parent) <= parent["delivered"]


FLOOD_PROGRAM = """
    import faulthandler, json, os, select, sys, threading, traceback, warnings

    # The flood threads are this program's own; the warning they cause is not under test here.
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded",
                            category=DeprecationWarning)
    import fleetenv

    FORKS, N, PER_THREAD = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    # A short shutdown_timeout bounds how long a sys.exit child waits at exit for its entries,
    # which queue behind the flood; what it does not wait for is still delivered.
    client = fleetenv.client(batch_size=100, max_queue_size=2_000_000, max_queue_bytes=1 << 30,
                             shutdown_timeout=0.5)
    report_r, report_w = os.pipe()
    stop = threading.Event()
    running = [threading.Event() for _ in range(4)]
    counts = [0] * 4

    def flood(t):
        n = 0
        while n < PER_THREAD and not stop.is_set():
            client.info("flood", {"src": "thread", "t": t, "n": n})
            n += 1
            if n == 1:
                running[t].set()
        counts[t] = n

    threads = [threading.Thread(target=flood, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for event in running:
        event.wait()

    def reap(pid):
        fd = os.pidfd_open(pid)
        ready, _, _ = select.select([fd], [], [], 30)
        os.close(fd)
        if not ready:
            os.kill(pid, 9)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        children[pid]["status"] = status if ready else "hung"

    children = {}
    running_children = []
    for k in range(FORKS):
        how = "sys.exit" if k % 3 == 2 else "os._exit"
        pid = os.fork()
        if pid == 0:
            faulthandler.dump_traceback_later(20, exit=True)
            try:
                for i in range(N):
                    client.info("child", {"src": "child", "pid": os.getpid(), "i": i})
                stats = client.stats()
                line = {"pid": os.getpid(), "logged": stats["logged"], "dropped": stats["dropped"]}
                os.write(report_w, (json.dumps(line) + "\\n").encode())
            except BaseException:
                traceback.print_exc()
                os._exit(3)
            if how == "sys.exit":
                sys.exit(0)  # runs atexit: flushes this child's entries, leaves the shipper
            os._exit(0)
        children[pid] = {"how": how, "flood_threads": sum(t.is_alive() for t in threads)}
        running_children.append(pid)
        if len(running_children) >= 4:  # a few children at a time, forks spread over the flood
            reap(running_children.pop(0))
    for pid in running_children:
        reap(pid)
    stop.set()
    for thread in threads:
        thread.join()
    os.close(report_w)
    reports = []
    with os.fdopen(report_r) as f:
        reports = [json.loads(line) for line in f]
    shut = client.shutdown(60.0)
    print("RESULT " + json.dumps({
        "children": children, "reports": reports, "thread_counts": counts,
        "stats": client.stats(), "shutdown": shut,
    }))
"""


@pytest.mark.timeout(180)
def test_raw_fork_while_four_threads_log_flat_out(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """30 raw forks while 4 threads log flat out: no child hangs, exact delivery counts."""
    # per_thread only bounds the flood: the threads stop when the last fork is reaped.
    forks, per_child, per_thread = 30, 200, 250_000
    script = write_program(tmp_path, "flood.py", FLOOD_PROGRAM)
    program = programs.python(script, program_env(server), str(forks), str(per_child),
                              str(per_thread))
    started = time.monotonic()
    result = json.loads(program.expect("RESULT", 150.0))
    assert program.wait(30.0) == 0, program.finish(1.0)[1]
    elapsed = time.monotonic() - started

    children = result["children"]
    assert len(children) == forks
    during_flood = sum(c["flood_threads"] == 4 for c in children.values())
    assert during_flood >= forks // 2, "most forks must happen while all four threads log"
    hung = {pid: c for pid, c in children.items() if c["status"] != 0}
    assert not hung, f"children hung or failed: {hung}; stderr: {program.finish(1.0)[1][-4000:]}"
    assert result["shutdown"] is True

    entries = server.entries
    child_keys = [(e["metadata"]["pid"], e["metadata"]["i"]) for e in entries
                  if e["metadata"]["src"] == "child"]
    thread_keys = [(e["metadata"]["t"], e["metadata"]["n"]) for e in entries
                   if e["metadata"]["src"] == "thread"]
    assert len(child_keys) == len(set(child_keys)), "a child's entry arrived twice"
    assert len(thread_keys) == len(set(thread_keys)), "a parent's entry arrived twice"
    per_pid = Counter(pid for pid, _ in child_keys)
    reports = {r["pid"]: r for r in result["reports"]}
    assert len(reports) == forks
    child_drops = 0
    for pid, report in reports.items():
        assert report["logged"] == per_child
        dropped = sum(report["dropped"].values())
        # Only a full pipe may cost a child entries under this flood, and it counts them.
        assert dropped == report["dropped"]["queue_full"], report
        child_drops += dropped
        # Exact: what the child did not count as dropped at the log call was delivered.
        assert per_pid[pid] == per_child - dropped, (pid, report)
    stats = result["stats"]
    logged_by_threads = sum(result["thread_counts"])
    assert stats["logged"] == logged_by_threads
    assert stats["delivered"] == len(thread_keys)
    assert stats["logged"] == stats["delivered"] + sum(stats["dropped"].values())
    sent = logged_by_threads + forks * per_child
    delivered = len(thread_keys) + len(child_keys)
    record("raw-fork-flood", forks=forks, sent=sent, delivered=delivered, lost=sent - delivered,
           child_entries=forks * per_child, child_delivered=len(child_keys),
           child_dropped_queue_full=child_drops, forks_during_flood=during_flood,
           parent_dropped=stats["dropped"], seconds=round(elapsed, 2))


HOOKLESS_PROGRAM = """
    import ctypes, faulthandler, json, os, select, sys, traceback

    import fleetenv

    FORKS, N, LOG_FIRST = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "log-first"
    hooks_ran = []
    os.register_at_fork(after_in_child=lambda: hooks_ran.append(os.getpid()))
    # PyDLL keeps the GIL across the call, as a C-level fork from an embedding server does.
    libc_fork = ctypes.PyDLL(None).fork
    libc_fork.restype = ctypes.c_int

    # In log-first mode every entry is a batch of its own: the shipper's notes keep the
    # notifier thread waking up (and taking the GIL) while the master forks.
    client = fleetenv.client(batch_size=1 if LOG_FIRST else 50, flush_interval=0.001)
    report_r, report_w = os.pipe()
    children = []
    for k in range(FORKS):
        if LOG_FIRST:
            for i in range(50):
                client.info("parent", {"src": "parent", "k": k, "i": i})
        pid = libc_fork()
        if pid == 0:
            faulthandler.dump_traceback_later(5, exit=True)
            try:
                for i in range(N):
                    client.info("hookless child", {"src": "child", "pid": os.getpid(), "i": i})
                stats = client.stats()
                line = {"pid": os.getpid(), "hooks_ran": os.getpid() in hooks_ran,
                        "logged": stats["logged"], "dropped": stats["dropped"]}
                os.write(report_w, (json.dumps(line) + "\\n").encode())
            except BaseException:
                traceback.print_exc()
                os._exit(3)
            os._exit(0)
        children.append(pid)
    statuses = {}
    for pid in children:
        fd = os.pidfd_open(pid)
        ready, _, _ = select.select([fd], [], [], 30)
        os.close(fd)
        if not ready:
            os.kill(pid, 9)
        status = os.waitpid(pid, 0)[1]
        statuses[pid] = os.waitstatus_to_exitcode(status) if ready else "hung"
    os.close(report_w)
    with os.fdopen(report_r) as f:
        reports = [json.loads(line) for line in f]
    client.info("parent after the forks", {"src": "parent", "k": -1})
    shut = client.shutdown(30.0)
    print("RESULT " + json.dumps({"statuses": statuses, "reports": reports,
                                  "stats": client.stats(), "shutdown": shut}))
"""


def run_hookless(server: IngestServer, programs: Programs, tmp_path: Path, forks: int,
                 per_child: int, mode: str) -> tuple[dict[str, Any], str]:
    script = write_program(tmp_path, "hookless.py", HOOKLESS_PROGRAM)
    program = programs.python(script, program_env(server), str(forks), str(per_child), mode)
    result = json.loads(program.expect("RESULT", 80.0))
    assert program.wait(30.0) == 0, program.finish(1.0)[1]
    return result, program.finish(1.0)[1]


def check_hookless(server: IngestServer, result: dict[str, Any], stderr: str, forks: int,
                   per_child: int, scenario: str) -> None:
    failed = {pid: status for pid, status in result["statuses"].items() if status != 0}
    sent = forks * per_child + result["stats"]["logged"]
    delivered = len(server.entries)
    record(scenario, forks=forks, children_hung_or_failed=len(failed), sent=sent,
           delivered=delivered, lost=sent - delivered)
    assert not failed, f"hook-less children hung or failed: {failed}; stderr: {stderr[-3000:]}"
    assert result["shutdown"] is True
    reports = result["reports"]
    assert len(reports) == forks
    assert not any(r["hooks_ran"] for r in reports), "the forks were meant to skip the hooks"
    per_pid = Counter(e["metadata"].get("pid") for e in server.entries)
    for report in reports:
        assert report["logged"] == per_child  # the child did not inherit the parent's counters
        assert sum(report["dropped"].values()) == 0, report
        assert per_pid[report["pid"]] == per_child
    stats = result["stats"]
    assert stats["logged"] == stats["delivered"] == per_pid[None]
    assert delivered == sent


@pytest.mark.timeout(90)
def test_fork_that_skips_the_at_fork_hooks_is_caught_by_the_pid_check(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Children of a C-level fork() (no at-fork hooks, as in uWSGI) log exactly once each."""
    forks, per_child = 10, 100
    result, stderr = run_hookless(server, programs, tmp_path, forks, per_child, "no-log-first")
    check_hookless(server, result, stderr, forks, per_child, "hookless-fork")


@pytest.mark.timeout(90)
def test_fork_that_skips_the_hooks_after_the_master_logged(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Hook-less forks from a master that logs between the forks: no child hangs, exact counts."""
    forks, per_child = 30, 50
    result, stderr = run_hookless(server, programs, tmp_path, forks, per_child, "log-first")
    check_hookless(server, result, stderr, forks, per_child, "hookless-fork-after-logging")


WARNING_PROGRAM = """
    import json, os, threading, warnings

    import fleetenv

    flushed = []
    client = fleetenv.client(batch_size=10, on_flush=flushed.append)
    threads_at_fork = []
    os.register_at_fork(
        after_in_parent=lambda: threads_at_fork.append(len(os.listdir("/proc/self/task"))))
    caught = []
    for round in range(5):
        for i in range(20):
            client.info("before fork", {"round": round, "i": i})
        assert client.flush(10.0)
        names = sorted(t.name for t in threading.enumerate())
        assert "logwell-notifier" in names, names  # our thread is running before each fork
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pid = os.fork()
            if pid == 0:
                client.info("child", {"pid": os.getpid()})
                client.flush(10.0)
                os._exit(0)
        caught += [str(w.message) for w in seen]
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    client.info("after the forks")
    assert client.flush(10.0)
    assert client.shutdown(10.0)  # joins the notifier: every callback has run
    delivered_notes = sum(flushed)
    print("RESULT " + json.dumps({"caught": caught, "threads_at_fork": threads_at_fork,
                                  "on_flush_total": delivered_notes, "stats": client.stats()}))
"""


@pytest.mark.timeout(60)
def test_fork_warning_about_threads_never_comes_from_logwell(
    server: IngestServer, programs: Programs, tmp_path: Path
) -> None:
    """Forking a process whose only extra thread is logwell's gives no DeprecationWarning."""
    script = write_program(tmp_path, "warn.py", WARNING_PROGRAM)
    program = programs.start([sys.executable, "-W", "error", str(script)], program_env(server),
                             cwd=tmp_path)
    result = json.loads(program.expect("RESULT", 50.0))
    assert program.wait(20.0) == 0, program.finish(1.0)[1]
    assert result["caught"] == []
    assert result["threads_at_fork"] == [1] * 5, "a logwell thread was alive at the fork"
    # The notifier came back after each fork: callbacks still run in the parent.
    assert result["on_flush_total"] == 101
    assert result["stats"]["delivered"] == 101
    assert server.wait_for_entries(106, 10.0)
    assert len(server.entries) == 106
