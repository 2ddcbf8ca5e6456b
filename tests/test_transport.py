"""Reading the server's answers, and the HTTP client's manners."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logwell._transport import Transport, parse_accepted
from logwell.testing import IngestServer


def test_plain_accept() -> None:
    """{"accepted": n} means every entry was delivered."""
    assert parse_accepted(b'{"accepted": 3}', 3).rejected == frozenset()


def test_rejected_entries_are_named_by_index() -> None:
    """Indices in 'Entry at index i' name the rejected entries."""
    body = b'{"accepted":1,"rejected":2,"errors":["Entry at index 0: x","Entry at index 2: y"]}'
    result = parse_accepted(body, 3)
    assert result.rejected == {0, 2} and result.accepted == 1
    assert result.errors == ("Entry at index 0: x", "Entry at index 2: y")


def test_unnamed_rejections_still_add_up() -> None:
    """A count without indices marks the last entries so totals balance."""
    assert parse_accepted(b'{"accepted":2,"rejected":2}', 4).rejected == {2, 3}


def test_garbage_is_taken_as_delivered() -> None:
    """A 2xx with an unreadable body counts as delivered, not retried."""
    for body in (b"", b"not json", b"[1,2]", b'{"rejected": "two"}'):
        assert parse_accepted(body, 2).accepted == 2


@given(count=st.integers(min_value=1, max_value=100), rejected=st.integers(min_value=-5,
       max_value=200), named=st.lists(st.integers(min_value=-3, max_value=120), max_size=10))
def test_rejections_never_exceed_the_batch(count: int, rejected: int, named: list[int]) -> None:
    """Whatever the server claims, rejected indices are within the batch and add up."""
    errors = [f"Entry at index {i}: bad" for i in named]
    body = f'{{"accepted": 0, "rejected": {rejected}, "errors": {errors!r}}}'.replace("'", '"')
    result = parse_accepted(body.encode(), count)
    assert all(0 <= i < count for i in result.rejected)
    assert result.accepted + len(result.rejected) == count
    if rejected > 0:
        assert len(result.rejected) >= min(rejected, count)


def test_transport_posts_json_with_bearer_auth() -> None:
    """The transport speaks the contract: JSON, Bearer key, /v1/ingest, no key in repr."""
    with IngestServer() as server:
        transport = Transport(server.endpoint, server.api_key, timeout=5.0)
        answer = transport.post(b'[{"level":"info","message":"hi"}]')
        assert answer.status == 200 and b'"accepted":1' in answer.body
        headers = server.requests[0].headers
        assert headers["content-type"] == "application/json"
        assert headers["authorization"] == f"Bearer {server.api_key}"
        assert server.api_key not in repr(transport)
        transport.close()
        server.refuse_connections()
        refused = transport.post(b"[]")
        assert refused.status is None and refused.error and server.api_key not in refused.error
