"""The channel from producers to the shipper: one OS pipe, one frame per write.

Every frame is a single ``os.write`` of at most ``PIPE_BUF`` bytes, which the
kernel makes atomic: threads and forked processes write into the same pipe
with no lock, and a producer killed at any instant leaves either a whole frame
or nothing. The write end is non-blocking, so a full pipe costs a log call one
failed system call, never a wait.

Frames are lines (encoded JSON never contains a raw newline)::

    E<pid> <entry json>\\n                  one entry
    C<pid> <id> <+|.> <slice of json>\\n    a slice of an entry larger than a frame
    F<pid> <token>\\n                       flush marker: tell <pid> when all before it is done
    S<pid>\\n                               <pid> wants a note for every delivered batch
"""

from __future__ import annotations

import fcntl
import os
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

#: Writes up to this size are atomic on a pipe (POSIX guarantees at least 512).
FRAME_MAX: Final = select.PIPE_BUF
#: Pipe capacity asked for; Linux lets unprivileged processes have up to 1 MiB.
PIPE_CAPACITY: Final = 1 << 20
#: A slice of a large entry left unfinished this long is discarded.
PARTIAL_TTL: Final = 30.0

ENTRY: Final = ord("E")
CHUNK: Final = ord("C")
FLUSH: Final = ord("F")
SUBSCRIBE: Final = ord("S")


class ChannelFull(Exception):
    """The pipe has no room for the frame now."""


class ChannelClosed(Exception):
    """No process reads the pipe any more: the shipper is gone."""


def open_pipe() -> tuple[int, int]:
    """Create the pipe: a blocking read end and a non-blocking write end, both close-on-exec."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_CAPACITY)
        except OSError:  # over the user's pipe quota: keep the default size
            pass
    return read_fd, write_fd


def write_frame(fd: int, frame: bytes) -> None:
    """Write one frame of at most FRAME_MAX bytes, all or nothing."""
    try:
        os.write(fd, frame)
    except BlockingIOError:
        raise ChannelFull from None
    except OSError:  # EPIPE: no reader left; EBADF: closed under us
        raise ChannelClosed from None


class Producer:
    """Frames for one process; its pid is part of every frame."""

    __slots__ = ("_chunk_head", "_flush_head", "entry_head", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.entry_head = b"E%d " % pid
        self._chunk_head = b"C%d " % pid
        self._flush_head = b"F%d " % pid

    def send(self, fd: int, data: bytes, message_ids: Iterator[int]) -> None:
        """Write one encoded entry: one frame, or numbered slices when it is large.

        Raises ChannelFull or ChannelClosed. A large entry that meets a full pipe
        halfway is abandoned; the shipper discards its slices after PARTIAL_TTL.
        """
        frame = self.entry_head + data + b"\n"
        if len(frame) <= FRAME_MAX:
            try:
                os.write(fd, frame)
            except BlockingIOError:
                raise ChannelFull from None
            except OSError:
                raise ChannelClosed from None
            return
        for part in self.slices(data, next(message_ids)):
            write_frame(fd, part)

    def slices(self, data: bytes, message_id: int) -> list[bytes]:
        """The frames that carry an entry too large for one frame."""
        head = self._chunk_head + b"%d " % message_id
        room = FRAME_MAX - len(head) - 3
        frames = []
        for start in range(0, len(data), room):
            last = start + room >= len(data)
            frames.append(head + (b". " if last else b"+ ") + data[start : start + room] + b"\n")
        return frames

    def flush_frame(self, token: int) -> bytes:
        return self._flush_head + b"%d\n" % token

    def subscribe_frame(self) -> bytes:
        return b"S%d\n" % self.pid


def wait_writable(fd: int, timeout: float) -> bool:
    """Wait until the pipe has room, for at most ``timeout`` seconds."""
    _, writable, _ = select.select([], [fd], [], max(0.0, timeout))
    return bool(writable)


@dataclass
class Entry:
    pid: int
    data: bytes


@dataclass
class FlushMarker:
    pid: int
    token: int


@dataclass
class Subscribe:
    pid: int


@dataclass
class FrameReader:
    """Cuts the byte stream back into entries and markers (shipper side)."""

    partial_ttl: float = PARTIAL_TTL
    malformed: int = 0
    _tail: bytes = b""
    _partials: dict[tuple[int, int], tuple[float, list[bytes]]] = field(default_factory=dict)

    def feed(self, data: bytes) -> Iterator[Entry | FlushMarker | Subscribe]:
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            item = self._parse(line)
            if item is not None:
                yield item

    def _parse(self, line: bytes) -> Entry | FlushMarker | Subscribe | None:
        try:
            kind = line[0]
            if kind == ENTRY:
                space = line.index(b" ")
                return Entry(int(line[1:space]), line[space + 1 :])
            if kind == CHUNK:
                pid, message_id, more, part = line[1:].split(b" ", 3)
                return self._join(int(pid), int(message_id), more == b"+", part)
            if kind == FLUSH:
                pid, token = line[1:].split(b" ")
                return FlushMarker(int(pid), int(token))
            if kind == SUBSCRIBE:
                return Subscribe(int(line[1:]))
        except (IndexError, ValueError):
            pass
        self.malformed += 1
        return None

    def _join(self, pid: int, message_id: int, more: bool, part: bytes) -> Entry | None:
        key = (pid, message_id)
        now = time.monotonic()
        if more:
            self._partials.setdefault(key, (now, []))[1].append(part)
            return None
        _, parts = self._partials.pop(key, (now, []))
        parts.append(part)
        self._expire(now)
        return Entry(pid, b"".join(parts))

    def _expire(self, now: float) -> None:
        """Forget slices whose writer died or gave up halfway."""
        stale = [k for k, (born, _) in self._partials.items() if now - born > self.partial_ttl]
        for key in stale:
            del self._partials[key]
            self.malformed += 1

    @property
    def pending_bytes(self) -> int:
        return len(self._tail) + sum(len(p) for _, ps in self._partials.values() for p in ps)
