"""Hypothesis throws hostile messages and metadata at a real client: nothing raises,
everything is delivered or counted, and the server never fails a batch."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logwell import Logwell
from logwell.testing import IngestServer


class Opaque:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("str fails")


scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**64, max_value=2**200)
    | st.floats() | st.text() | st.binary(max_size=64) | st.uuids()
    | st.decimals(allow_nan=False) | st.datetimes() | st.text().map(Opaque) | st.just(Broken())
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff tail", " ", "\\u0000"])
)
hostile = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.frozensets(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=10) | st.integers() | st.uuids(), inner, max_size=5),
    max_leaves=25,
)
messages = st.text() | st.integers() | st.none() | st.text().map(lambda t: t * 50) | st.just(
    "   ") | st.sampled_from(["nul\x00", "\ud83d lone", "x" * 20_000])


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[IngestServer, Logwell]]:
    with IngestServer() as server:
        client = Logwell({"api_key": server.api_key, "endpoint": server.endpoint,
                          "flush_interval": 0.05, "max_entry_bytes": 8_192, "batch_size": 100})
        yield server, client
        client.shutdown(10)


@pytest.mark.timeout(180)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(message=messages, metadata=hostile | st.dictionaries(st.text(max_size=5), hostile),
       level=st.sampled_from(["debug", "info", "warn", "error", "fatal"]))
def test_hostile_calls_never_raise(
    shared: tuple[IngestServer, Logwell], message: Any, metadata: Any, level: str
) -> None:
    """A log call with any message and metadata returns normally."""
    _, client = shared
    getattr(client, level)(message, metadata)
    client.log({"level": level, "message": message, "metadata": metadata})  # type: ignore[typeddict-item]
    client.child({"ctx": metadata} if isinstance(metadata, str) else {}).info(message)


@pytest.mark.timeout(60)
def test_every_hostile_entry_was_delivered_or_counted(shared: tuple[IngestServer, Logwell]) -> None:
    """After the barrage: the accounting balances and the server failed no batch."""
    server, client = shared
    assert client.flush(30)
    stats = client.stats()
    assert stats["logged"] > 0
    assert stats["logged"] == (stats["delivered"] + stats["rejected"] + stats["failed"]
                               + sum(stats["dropped"].values()) + stats["backlog"])
    assert stats["backlog"] == 0 and stats["failed"] == 0 and stats["rejected"] == 0
    assert all(r.status == 200 for r in server.requests)
    assert len(server.entries) == stats["delivered"]
    assert stats["altered"] > 0 and stats["truncated"] > 0


def test_values_round_trip_where_json_can_hold_them(shared: tuple[IngestServer, Logwell]) -> None:
    """Decimal and UUID arrive in their documented string forms."""
    server, client = shared
    marker = str(uuid.uuid4())
    client.info(marker, {"d": decimal.Decimal("2.50"), "u": uuid.UUID(int=1)})
    assert client.flush(10)
    entry = next(e for e in server.entries if e["message"] == marker)
    assert entry["metadata"] == {"d": "2.50", "u": "00000000-0000-0000-0000-000000000001"}
