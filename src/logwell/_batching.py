"""Cutting the shipper's backlog into request bodies the server accepts."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final, TypeVar

_BRACKETS: Final = 2

T = TypeVar("T")


def body_size(sizes: Sequence[int]) -> int:
    """Bytes of a JSON array holding entries of these sizes."""
    return _BRACKETS + sum(sizes) + max(0, len(sizes) - 1)


def take_batch(
    backlog: deque[tuple[T, bytes]], max_count: int, max_bytes: int
) -> list[tuple[T, bytes]]:
    """Pop from the head of the backlog as many entries as fit one request.

    At most ``max_count`` entries and a body of at most ``max_bytes``; the first
    entry is always taken (entries are capped below ``max_bytes`` when encoded),
    so every call makes progress.
    """
    batch: list[tuple[T, bytes]] = []
    size = _BRACKETS - 1
    while backlog and len(batch) < max_count:
        entry_size = len(backlog[0][1]) + 1
        if batch and size + entry_size > max_bytes:
            break
        size += entry_size
        batch.append(backlog.popleft())
    return batch


def encode_body(entries: Sequence[bytes]) -> bytes:
    """The request body: a JSON array of already encoded entries."""
    return b"[" + b",".join(entries) + b"]"
