"""The shared-memory counters: slots per pid, found by any reader, reclaimed when dead."""

from __future__ import annotations

import os
import subprocess
import sys

from logwell import _stats


def test_slots_are_found_by_pid_and_survive_collisions() -> None:
    """Pids that hash to the same slot each get their own."""
    fd, block = _stats.create()
    try:
        publisher = _stats.Publisher(block, shipper_pid=1)
        pids = [5, 5 + _stats.SLOTS, 5 + 2 * _stats.SLOTS, 77]
        for n, pid in enumerate(pids):
            publisher.slot(pid)[_stats.DELIVERED] = n + 10
        publisher.publish()
        assert [_stats.read_slot(block, pid).delivered for pid in pids] == [10, 11, 12, 13]
        assert _stats.read_slot(block, 999).delivered == 0
        assert _stats.read_header(block).shipper_pid == 1
        assert _stats.heartbeat_age(block) < 5
    finally:
        block.close()
        os.close(fd)


def test_heartbeat_age_is_infinite_before_the_shipper_starts() -> None:
    """A block nobody has written to shows no heartbeat."""
    fd, block = _stats.create()
    try:
        assert _stats.heartbeat_age(block) == float("inf")
    finally:
        block.close()
        os.close(fd)


def test_dead_processes_give_their_slots_back() -> None:
    """When the table fills, slots of exited pids with nothing pending are reused."""
    fd, block = _stats.create()
    try:
        publisher = _stats.Publisher(block, shipper_pid=1)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, check=True, text=True)
        dead_pid = int(dead.stdout)
        publisher.slot(dead_pid)[_stats.DELIVERED] = 3
        publisher.publish()
        for pid in range(1_000_000, 1_000_000 + _stats.SLOTS * 3 // 4):
            publisher.slot(pid)
        assert dead_pid not in publisher._slots
        publisher.slot(os.getpid())[_stats.DELIVERED] = 1
        publisher.publish([os.getpid()])
        assert _stats.read_slot(block, os.getpid()).delivered == 1
    finally:
        block.close()
        os.close(fd)
