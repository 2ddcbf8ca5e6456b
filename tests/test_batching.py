"""Cutting the backlog into request bodies: count and byte limits, order, no loss."""

from __future__ import annotations

from collections import deque

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from logwell._batching import body_size, encode_body, take_batch


def backlog_of(sizes: list[int]) -> deque[tuple[int, bytes]]:
    return deque((i, b"x" * size) for i, size in enumerate(sizes))


def test_body_is_a_json_array_of_the_entries() -> None:
    """encode_body joins encoded entries into one JSON array."""
    body = encode_body([b'{"a":1}', b'{"b":2}'])
    assert orjson.loads(body) == [{"a": 1}, {"b": 2}]
    assert len(body) == body_size([7, 7])


def test_first_entry_is_always_taken() -> None:
    """Even an entry larger than the byte limit makes progress."""
    backlog = backlog_of([1_000])
    assert len(take_batch(backlog, 100, 10)) == 1 and not backlog


@settings(max_examples=300)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5_000), max_size=400),
    max_count=st.integers(min_value=1, max_value=100),
    max_bytes=st.integers(min_value=5_002, max_value=524_288),
)
def test_every_entry_once_in_order_within_limits(
    sizes: list[int], max_count: int, max_bytes: int
) -> None:
    """Batches cover the backlog exactly once, in order, each within count and bytes."""
    backlog = backlog_of(sizes)
    seen: list[int] = []
    while backlog:
        batch = take_batch(backlog, max_count, max_bytes)
        assert 1 <= len(batch) <= max_count
        assert body_size([len(data) for _, data in batch]) <= max_bytes
        assert len(encode_body([data for _, data in batch])) <= max_bytes
        seen.extend(index for index, _ in batch)
    assert seen == list(range(len(sizes)))


@given(sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=300))
def test_batches_are_as_full_as_the_limits_allow(sizes: list[int]) -> None:
    """A batch stops only at the count limit, the byte limit, or the end of the backlog."""
    max_bytes = 4_096
    backlog = backlog_of(sizes)
    while backlog:
        batch = take_batch(backlog, 100, max_bytes)
        if backlog and len(batch) < 100:
            grown = [len(data) for _, data in batch] + [len(backlog[0][1])]
            assert body_size(grown) > max_bytes
