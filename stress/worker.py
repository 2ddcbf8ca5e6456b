"""What one forked worker process does: T threads logging, then drain, exit and report.

Each thread times every log call on its own and counts the latency into a histogram
per time slice of the run, so the parent can merge threads and processes exactly and
draw latency over time. Nothing but the log call sits between the two clock reads.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import orjson

from logwell import Logwell
from stress.server import SEQ_KEY, STREAM_KEY
from stress.workload import make_pool

#: Live counters per worker in shared memory: the parent's progress line reads them.
SLOT = struct.Struct("<8q")
SLOT_FIELDS = ("logged", "delivered", "rejected", "failed", "dropped", "backlog", "done", "pid")
_PUBLISH_EVERY = 0.25


def shared_block(workers: int) -> mmap.mmap:
    """Anonymous shared memory created before the fork, one slot per worker."""
    return mmap.mmap(-1, max(1, workers) * SLOT.size)


def read_slots(block: mmap.mmap, workers: int) -> list[dict[str, int]]:
    return [dict(zip(SLOT_FIELDS, SLOT.unpack_from(block, i * SLOT.size), strict=True))
            for i in range(workers)]


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker needs to know; the same for every worker but ``index``."""

    index: int
    threads: int
    rate_per_thread: float  # 0: flat out
    start_ns: int  # perf_counter_ns (CLOCK_MONOTONIC, shared by all processes on Linux)
    end_ns: int
    slice_ns: int
    drain_timeout: float
    shutdown_timeout: float
    use_child: bool
    seed: int


class LoggingThread(threading.Thread):
    """Logs from the run's start to its end, at a rate or flat out, timing each call."""

    def __init__(self, plan: WorkerPlan, number: int, logger: Logwell) -> None:
        super().__init__(name=f"stress-{plan.index}-{number}", daemon=True)
        self.plan = plan
        self.stream = plan.index * 1000 + number
        self.logger = logger
        self.pool = make_pool(plan.seed * 7919 + self.stream)
        self.calls = 0
        self.slices: dict[int, tuple[dict[int, int], int, int, int]] = {}
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self.error = traceback.format_exc()

    def _loop(self) -> None:  # one flat loop on purpose: it is the measured path
        plan = self.plan
        clock = time.perf_counter_ns
        sleep = time.sleep
        items = [(getattr(self.logger, level), message, metadata)
                 for level, message, metadata in self.pool]
        size = len(items)
        stream = self.stream
        start, end, width = plan.start_ns, plan.end_ns, plan.slice_ns
        period = 1e9 / plan.rate_per_thread if plan.rate_per_thread > 0 else 0.0
        now = clock()
        if now < start:
            sleep((start - now) / 1e9)
        seq = 0
        index = 0
        counts: dict[int, int] = {}
        n = total = top = 0
        slice_no = 0
        slice_end = start + width
        while True:
            now = clock()
            if now >= end:
                break
            if period:
                due = start + seq * period
                if now < due:
                    sleep((due - now) / 1e9)
                    continue
            method, message, metadata = items[index]
            index = index + 1 if index + 1 < size else 0
            entry_metadata = {**metadata, STREAM_KEY: stream, SEQ_KEY: seq}
            t0 = clock()
            method(message, entry_metadata)
            t1 = clock()
            seq += 1
            dt = t1 - t0
            if dt < 128:
                b = dt
            else:
                shift = dt.bit_length() - 7
                b = shift * 64 + (dt >> shift)
            counts[b] = counts.get(b, 0) + 1
            n += 1
            total += dt
            if dt > top:
                top = dt
            if t1 >= slice_end:
                self.slices[slice_no] = (counts, n, total, top)
                self.calls = seq
                counts = {}
                n = total = top = 0
                slice_no = (t1 - start) // width
                slice_end = start + (slice_no + 1) * width
        if n:
            self.slices[slice_no] = (counts, n, total, top)
        self.calls = seq


def _publish(block: mmap.mmap, index: int, stats: dict[str, Any], done: int) -> None:
    dropped = sum(stats["dropped"].values())
    SLOT.pack_into(block, index * SLOT.size, stats["logged"], stats["delivered"],
                   stats["rejected"], stats["failed"], dropped, stats["backlog"], done,
                   os.getpid())


def run_worker(plan: WorkerPlan, client: Logwell, block: mmap.mmap, result_path: str) -> int:
    """The body of a forked worker; returns its exit status."""
    root = client.child({"worker": plan.index}) if plan.use_child else client
    threads = [
        LoggingThread(plan, t, root.child({"thread": t}) if plan.use_child and t % 2 else root)
        for t in range(plan.threads)
    ]
    for thread in threads:
        thread.start()
    hard_stop = time.monotonic() + (plan.end_ns - time.perf_counter_ns()) / 1e9 + 60.0
    while any(t.is_alive() for t in threads) and time.monotonic() < hard_stop:
        _publish(block, plan.index, client.stats(), 0)
        time.sleep(_PUBLISH_EVERY)
    logging_end = time.monotonic()
    drained = client.flush(plan.drain_timeout)
    drained_at = time.monotonic()
    started = time.monotonic()
    client.shutdown(plan.shutdown_timeout)
    exit_time = time.monotonic() - started
    stats = client.stats()
    _publish(block, plan.index, stats, 1)
    slices: dict[str, list[Any]] = {}
    for thread in threads:
        for number, (counts, n, total, top) in thread.slices.items():
            merged = slices.setdefault(str(number), [{}, 0, 0, 0])
            for bucket, count in counts.items():
                merged[0][bucket] = merged[0].get(bucket, 0) + count
            merged[1] += n
            merged[2] += total
            merged[3] = max(merged[3], top)
    result = {
        "index": plan.index,
        "pid": os.getpid(),
        "calls": {str(t.stream): t.calls for t in threads},
        "errors": [t.error for t in threads if t.error],
        "stuck": [t.name for t in threads if t.is_alive()],
        "slices": {k: [{str(b): c for b, c in v[0].items()}, v[1], v[2], v[3]]
                   for k, v in slices.items()},
        "stats": stats,
        "logging_end": logging_end,
        "drained": drained,
        "drained_at": drained_at,
        "exit_time": exit_time,
    }
    with open(result_path, "wb") as f:
        f.write(orjson.dumps(result))
    return 0 if not result["errors"] and not result["stuck"] else 1


def fork_worker(plan: WorkerPlan, client: Logwell, block: mmap.mmap, result_path: str) -> int:
    """Fork a worker the way a pre-fork server does; returns its pid in the parent."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        status = run_worker(plan, client, block, result_path)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
