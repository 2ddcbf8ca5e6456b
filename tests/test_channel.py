"""The pipe protocol: frames survive the byte stream, slices reassemble, leftovers expire."""

from __future__ import annotations

import itertools
import os
import threading

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwell._channel import (
    FRAME_MAX,
    ChannelClosed,
    ChannelFull,
    Entry,
    FlushMarker,
    FrameReader,
    Producer,
    Subscribe,
    open_pipe,
    write_frame,
)


def frames_for(producer: Producer, data: bytes, ids: itertools.count[int]) -> list[bytes]:
    single = producer.slices(data, next(ids)) if len(data) + 16 > FRAME_MAX else None
    return single or [b"E%d " % producer.pid + data + b"\n"]


@settings(max_examples=200)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=12_000).map(
        lambda b: orjson.dumps(b.hex())), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=5_000), max_size=30),
)
def test_entries_come_out_whole_however_the_stream_is_cut(
    payloads: list[bytes], cuts: list[int]
) -> None:
    """Reading the stream in arbitrary pieces yields each entry once, byte for byte."""
    producer = Producer(4242)
    ids = itertools.count()
    stream = b"".join(f for p in payloads for f in frames_for(producer, p, ids))
    assert all(len(f) <= FRAME_MAX for p in payloads for f in frames_for(producer, p, ids))
    reader = FrameReader()
    out: list[Entry | FlushMarker] = []
    position = 0
    for cut in cuts:
        out.extend(reader.feed(stream[position : position + cut]))
        position += cut
    out.extend(reader.feed(stream[position:]))
    assert [(e.pid, e.data) for e in out if isinstance(e, Entry)] == [
        (4242, p) for p in payloads]
    assert reader.malformed == 0


def test_slices_of_two_producers_interleave() -> None:
    """Slices are keyed by pid and message id, so interleaved writers do not mix."""
    a, b = Producer(1), Producer(2)
    big_a, big_b = b'"' + b"a" * 9_000 + b'"', b'"' + b"b" * 9_000 + b'"'
    sa, sb = a.slices(big_a, 7), b.slices(big_b, 7)
    stream = b"".join(x for pair in itertools.zip_longest(sa, sb, fillvalue=b"") for x in pair)
    items = list(FrameReader().feed(stream))
    found = sorted((i.pid, i.data) for i in items if isinstance(i, Entry))
    assert found == [(1, big_a), (2, big_b)]


def test_unfinished_slices_expire_and_are_counted() -> None:
    """A writer that dies halfway leaves slices that are dropped after the TTL."""
    reader = FrameReader(partial_ttl=0.0)
    first = Producer(9).slices(b"x" * 9_000, 1)[0]
    assert list(reader.feed(first)) == []
    assert reader.pending_bytes > 0
    list(reader.feed(Producer(9).slices(b"y" * 9_000, 2)[-1]))  # another message completes
    assert reader.malformed == 1


def test_flush_markers_and_garbage() -> None:
    """Flush markers and subscriptions parse; malformed lines are counted, not fatal."""
    stream = Producer(5).flush_frame(3) + b"junk\nE12\n\nCx\nSx\n" + b"E5 {}\n"
    stream += Producer(5).subscribe_frame()
    reader = FrameReader()
    items = list(reader.feed(stream))
    assert items == [FlushMarker(5, 3), Entry(5, b"{}"), Subscribe(5)]
    assert reader.malformed == 5


def test_full_and_closed_pipes_raise_distinct_errors() -> None:
    """A full pipe is ChannelFull (drop the entry); no reader is ChannelClosed."""
    read_fd, write_fd = open_pipe()
    try:
        frame = b"E1 " + b"x" * 4_000 + b"\n"
        with pytest.raises(ChannelFull):
            for _ in range(10_000):
                write_frame(write_fd, frame)
        os.close(read_fd)
        with pytest.raises(ChannelClosed):
            write_frame(write_fd, frame)
        with pytest.raises(ChannelClosed):
            Producer(1).send(write_fd, b"{}", itertools.count())
    finally:
        os.close(write_fd)


@pytest.mark.timeout(30)
def test_concurrent_writers_never_interleave_within_a_frame() -> None:
    """Eight threads writing frames at once: the reader sees only whole frames."""
    read_fd, write_fd = open_pipe()
    os.set_blocking(write_fd, True)  # this test wants every frame through, not drops
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(read_fd, 1 << 16):
            chunks.append(data)

    reader_thread = threading.Thread(target=drain)
    reader_thread.start()

    def write(tid: int) -> None:
        producer = Producer(tid)
        ids = itertools.count()
        for i in range(2_000):
            producer.send(write_fd, orjson.dumps({"t": tid, "i": i, "pad": "z" * (i % 5_000)}), ids)

    writers = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    os.close(write_fd)
    reader_thread.join()
    os.close(read_fd)
    reader = FrameReader()
    entries = [e for e in reader.feed(b"".join(chunks)) if isinstance(e, Entry)]
    assert reader.malformed == 0
    per_thread: dict[int, list[int]] = {}
    for e in entries:
        decoded = orjson.loads(e.data)
        assert decoded["t"] == e.pid
        per_thread.setdefault(e.pid, []).append(decoded["i"])
    assert per_thread == {t: list(range(2_000)) for t in range(8)}
