"""The way back from the shipper to a producer process: small datagrams.

Each producer process that needs answers (flush, callbacks) binds its own
Unix datagram socket at an address made of the pipeline's nonce and its pid;
the shipper sends to that address and forgets. A process that never binds,
or has exited, simply misses its notes: nothing blocks on them. The numbers
that must not be missed live in shared memory (``_stats``); notes only wake
waiters and carry what callbacks report.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import tempfile
from typing import Any, Final

import orjson

_NOTE_MAX: Final = 16_384


def address(nonce: str, pid: int) -> str | bytes:
    """Where ``pid``'s inbox listens: the abstract namespace on Linux, a temp file elsewhere."""
    if sys.platform.startswith("linux"):
        return f"\0logwell.{nonce}.{pid}".encode()
    return os.path.join(tempfile.gettempdir(), f"logwell.{nonce}.{pid}")  # pragma: no cover


class Inbox:
    """The receiving end in a producer process."""

    def __init__(self, nonce: str, pid: int) -> None:
        self.nonce = nonce
        self._address = address(nonce, pid)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            self._sock.bind(self._address)
        except OSError:
            self._sock.close()
            raise

    def receive(self, timeout: float) -> list[dict[str, Any]]:
        """Every note waiting now, after waiting up to ``timeout`` for the first.

        Several threads may call this at once; each note goes to one of them.
        """
        notes: list[dict[str, Any]] = []
        try:
            select.select([self._sock], [], [], max(timeout, 0.0))
            while True:
                note = orjson.loads(self._sock.recv(_NOTE_MAX))
                if isinstance(note, dict):
                    notes.append(note)
        except (OSError, ValueError):  # drained (EAGAIN), closed, or a garbled note
            pass
        return notes

    def poke(self, note: dict[str, Any]) -> None:
        """Send a note to this inbox itself, to wake whoever waits on it."""
        send_note(self._sock, self._address, note)

    def close(self) -> None:
        self._sock.close()
        if isinstance(self._address, str):  # pragma: no cover - not Linux
            try:
                os.unlink(self._address)
            except OSError:
                pass


def sender() -> socket.socket:
    """An unbound, non-blocking socket to send notes with."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def send_note(sock: socket.socket, to: str | bytes, note: dict[str, Any]) -> bool:
    """Send one note; False when nobody listens or its inbox is full."""
    try:
        sock.sendto(orjson.dumps(note)[:_NOTE_MAX], to)
    except OSError:
        return False
    return True
