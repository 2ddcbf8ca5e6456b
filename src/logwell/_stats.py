"""Counters the shipper publishes in shared memory, per producer process.

The shipper is the only writer; any process of the fleet reads its own slot
at any time without a round trip, and the numbers outlive a shipper that was
killed, which is what lets a producer count exactly what died with it.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

_MAGIC: Final = 0x4C4F4757454C4C31  # "LOGWELL1"
_HEADER: Final = struct.Struct("<QQQQQQQQQQQQQQQQ")
_SLOT: Final = struct.Struct("<QQQQQQQQQ")
SLOTS: Final = 4096
SIZE: Final = _HEADER.size + SLOTS * _SLOT.size
_FREE: Final = 0
_TOMBSTONE: Final = 0xFFFFFFFF


class Slot(NamedTuple):
    """What the shipper did with one process's entries."""

    pid: int = 0
    received: int = 0
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0
    backlog: int = 0
    flushed_token: int = 0
    altered: int = 0


# Positions in a slot's counter list.
RECEIVED, DELIVERED, REJECTED, FAILED, DROPPED, BACKLOG, FLUSHED, ALTERED = range(1, 9)


class Header(NamedTuple):
    """The shipper's own totals and liveness."""

    magic: int = 0
    shipper_pid: int = 0
    heartbeat_ns: int = 0
    requests: int = 0
    retries: int = 0
    backlog: int = 0
    backlog_bytes: int = 0
    received: int = 0
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0
    malformed: int = 0
    draining: int = 0
    reserved1: int = 0
    reserved2: int = 0


# Positions in the header list.
(HEARTBEAT, REQUESTS, RETRIES, H_BACKLOG, H_BACKLOG_BYTES, H_RECEIVED, H_DELIVERED, H_REJECTED,
 H_FAILED, H_DROPPED, H_MALFORMED, H_DRAINING) = range(2, 14)


def create() -> tuple[int, mmap.mmap]:
    """A zeroed block backed by an unnamed file: an fd to pass on and a mapping."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("logwell-stats", os.MFD_CLOEXEC)
    else:  # pragma: no cover - platforms without memfd
        fd, path = tempfile.mkstemp(prefix="logwell-stats-")
        os.unlink(path)
    os.ftruncate(fd, SIZE)
    return fd, mmap.mmap(fd, SIZE)


def attach(fd: int) -> mmap.mmap:
    return mmap.mmap(fd, SIZE)


def _offset(index: int) -> int:
    return _HEADER.size + index * _SLOT.size


def read_header(block: mmap.mmap) -> Header:
    return Header(*_HEADER.unpack_from(block, 0))


def read_slot(block: mmap.mmap, pid: int) -> Slot:
    """The slot of ``pid``, or zeros when the shipper has seen nothing from it yet."""
    for index in _probe(pid):
        slot = Slot(*_SLOT.unpack_from(block, _offset(index)))
        if slot.pid == pid:
            return slot
        if slot.pid == _FREE:
            break
    return Slot(pid=pid)


def heartbeat_age(block: mmap.mmap) -> float:
    """Seconds since the shipper last proved it was running (inf before it started)."""
    header = read_header(block)
    if header.magic != _MAGIC:
        return float("inf")
    return max(0.0, (time.monotonic_ns() - header.heartbeat_ns) / 1e9)


def _probe(pid: int) -> Iterator[int]:
    """Open addressing: the slots to try for ``pid``, in order."""
    start = pid % SLOTS
    for step in range(SLOTS):
        yield (start + step) % SLOTS


class Publisher:
    """The shipper's writing side: one slot per producer pid, claimed on first sight."""

    def __init__(self, block: mmap.mmap, shipper_pid: int) -> None:
        self._block = block
        self._index: dict[int, int] = {}
        self._slots: dict[int, list[int]] = {}
        self.header = list(Header(magic=_MAGIC, shipper_pid=shipper_pid))
        self.beat()

    def slot(self, pid: int) -> list[int]:
        """The live counters of ``pid`` as a mutable list in ``Slot`` field order."""
        counters = self._slots.get(pid)
        if counters is None:
            index = self._claim(pid)
            counters = list(Slot(pid=pid))
            self._slots[pid] = counters
            self._index[pid] = index
            if index >= 0:
                self._write_slot(index, counters)
        return counters

    def _claim(self, pid: int) -> int:
        if len(self._index) >= SLOTS * 3 // 4:
            self._reclaim()
        for index in _probe(pid):
            taken = _SLOT.unpack_from(self._block, _offset(index))[0]
            if taken in (_FREE, _TOMBSTONE):
                return index
        return -1  # table full of live processes: count, but do not publish

    def _reclaim(self) -> None:
        """Free the slots of processes that have exited and have nothing pending."""
        for pid, counters in list(self._slots.items()):
            if counters[BACKLOG] == 0 and not _alive(pid):
                index = self._index.pop(pid)
                del self._slots[pid]
                if index >= 0:
                    free = Slot(pid=_TOMBSTONE)
                    self._write_slot(index, free)

    def publish(self, pids: Iterable[int] | None = None) -> None:
        """Write the header and the slots of ``pids`` (all when None) to shared memory."""
        for pid in self._slots if pids is None else pids:
            index = self._index.get(pid, -1)
            if index >= 0:
                self._write_slot(index, self._slots[pid])
        self.beat()

    def beat(self) -> None:
        self.header[HEARTBEAT] = time.monotonic_ns()
        self._block[0 : _HEADER.size] = _HEADER.pack(*self.header)

    def _write_slot(self, index: int, counters: Iterable[int]) -> None:
        # Packed first, then copied in one go: struct.pack_into zero-fills its target
        # before writing, and a reader in another process could see those zeros.
        start = _offset(index)
        self._block[start : start + _SLOT.size] = _SLOT.pack(*counters)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
