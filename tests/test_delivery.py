"""End to end: log calls through a real shipper process to the test server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from logwell import Logwell
from logwell.testing import IngestServer


@pytest.mark.timeout(60)
def test_ten_thousand_entries_from_four_threads_arrive_once(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """10,000 entries from 4 threads, then shutdown(): each arrives exactly once, intact."""
    client = make_client(service="api", batch_size=100)
    per_thread = 2_500

    def produce(thread: int) -> None:
        for i in range(per_thread):
            client.info(f"entry {thread}-{i}", {"thread": thread, "i": i})

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.shutdown(30.0)
    entries = server.entries
    keys = [(e["metadata"]["thread"], e["metadata"]["i"]) for e in entries]
    assert len(keys) == 10_000
    assert set(keys) == {(t, i) for t in range(4) for i in range(per_thread)}
    for thread in range(4):
        mine = [i for t, i in keys if t == thread]
        assert mine == sorted(mine), "entries of one thread arrive in order"
    first = entries[0]
    assert first["level"] == "info"
    assert first["service"] == "api"
    assert first["message"] == f"entry {first['metadata']['thread']}-{first['metadata']['i']}"
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == 24
    stats = client.stats()
    assert stats["logged"] == stats["delivered"] == 10_000
