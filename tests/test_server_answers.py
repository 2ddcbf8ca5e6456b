"""How the shipper treats each answer the server can give, through real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import shipper_pids, wait_for
from logwell import Logwell, LogwellError, LogwellErrorCode
from logwell.testing import IngestServer, Reply

pytestmark = pytest.mark.timeout(60)


class Errors:
    """Collects what on_error receives."""

    def __init__(self) -> None:
        self.seen: list[LogwellError] = []

    def __call__(self, error: Exception) -> None:
        assert isinstance(error, LogwellError)
        self.seen.append(error)

    def codes(self) -> set[LogwellErrorCode]:
        return {e.code for e in self.seen}


def log_many(client: Logwell, count: int, prefix: str = "entry") -> None:
    for i in range(count):
        client.info(f"{prefix} {i}", {"i": i})


def indices(server: IngestServer) -> list[int]:
    return sorted(e["metadata"]["i"] for e in server.entries)


def test_transient_5xx_are_retried_until_delivered(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A storm of 503s and 502s ends in delivery, with the retries counted."""
    server.script(503, 503, 502, 504)
    client = make_client(batch_size=10)
    log_many(client, 10)
    assert client.flush(20)
    assert indices(server) == list(range(10))
    stats = client.stats()
    assert stats["delivered"] == 10 and stats["shipper"]["retries"] >= 4


def test_retry_after_is_obeyed_but_capped(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A 429 asking for 60 s waits only max_retry_after, then delivers."""
    server.script(Reply(429, headers={"Retry-After": "60"}))
    client = make_client(max_retry_after=0.3)
    started = time.monotonic()
    log_many(client, 3)
    assert client.flush(20)
    assert 0.3 <= time.monotonic() - started < 10
    assert indices(server) == [0, 1, 2]


def test_413_splits_the_batch_and_never_resends_it_whole(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """After a 413 the same entries go out in halves."""
    server.script(413)
    client = make_client(batch_size=8)
    log_many(client, 8)
    assert client.flush(20)
    assert indices(server) == list(range(8))
    counts = [r.entry_count for r in server.requests]
    assert counts[0] == 8 and max(counts[1:]) <= 4


@pytest.mark.parametrize("status", [400, 403, 404, 415])
def test_final_answers_are_not_retried(
    status: int, server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """400, 403, 404 and 415 fail the batch at once and are reported as VALIDATION_ERROR."""
    server.script(status)
    errors = Errors()
    client = make_client(batch_size=5, on_error=errors)
    log_many(client, 5)
    assert client.flush(20)
    assert len(server.requests) == 1
    stats = client.stats()
    assert stats["failed"] == 5 and stats["delivered"] == 0
    assert stats["logged"] == stats["failed"]
    client.shutdown()
    assert LogwellErrorCode.VALIDATION_ERROR in errors.codes()
    assert any(e.status_code == status for e in errors.seen)


def test_wrong_key_is_reported_once_and_sending_pauses(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A 401 is reported as UNAUTHORIZED; later batches are not sent meanwhile."""
    errors = Errors()
    client = make_client(api_key="lw_" + "Z" * 32, batch_size=2, on_error=errors)
    log_many(client, 2)
    assert client.flush(20)
    log_many(client, 6, "later")
    assert client.flush(20)
    assert len(server.requests) == 1 and server.requests[0].status == 401
    stats = client.stats()
    assert stats["failed"] == 8 and stats["logged"] == 8
    client.shutdown()
    unauthorized = [e for e in errors.seen if e.code is LogwellErrorCode.UNAUTHORIZED]
    assert len(unauthorized) == 1
    assert "api_key" in unauthorized[0].message and "Z" * 32 not in str(unauthorized[0])


def test_partial_accept_counts_rejected_entries_without_resending(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Entries the server rejects in a 200 are counted as rejected, not retried."""
    body = b'{"accepted":2,"rejected":1,"errors":["Entry at index 1: message is required"]}'
    server.script(Reply(200, body=body))
    errors = Errors()
    client = make_client(batch_size=3, on_error=errors)
    log_many(client, 3)
    assert client.flush(20)
    stats = client.stats()
    assert (stats["delivered"], stats["rejected"]) == (2, 1)
    assert len(server.requests) == 1
    client.shutdown()
    assert any("index 1" in e.message for e in errors.seen)


class PoisonServer(IngestServer):
    """Fails a whole batch with 500 when any message is longer than 40 characters."""

    max_message_chars = 40


def test_poison_entry_is_isolated_and_the_rest_delivered(
    make_client: Callable[..., Logwell]
) -> None:
    """One entry that fails every batch it is in is bisected out; its neighbours arrive."""
    with PoisonServer() as server:
        client = make_client(endpoint=server.endpoint, batch_size=16, max_retries=3)
        for i in range(16):
            client.info("p" * 60 if i == 11 else f"fine {i}", {"i": i})
        client.info("behind", {"i": 99})
        assert client.flush(30)
        assert indices(server) == [i for i in range(16) if i != 11] + [99]
        stats = client.stats()
        assert stats["failed"] == 1 and stats["delivered"] == 16
        assert len(server.requests) < 20
        client.shutdown()


def test_refused_connections_are_retried_until_the_server_is_back(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """While connections are refused the backlog waits; it is delivered when they return."""
    server.refuse_connections()
    client = make_client(max_retries=1000)
    log_many(client, 20)
    assert not client.flush(0.5)
    assert client.stats()["backlog"] == 20
    server.accept_connections()
    assert client.flush(20)
    assert indices(server) == list(range(20))


@pytest.mark.parametrize("reply", [Reply(reset=True), Reply(hang=True), Reply(delay=0.3)])
def test_resets_hangs_and_slow_answers_are_survived(
    reply: Reply, server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A reset, a request that never gets an answer, or a slow one: the entries still arrive."""
    server.script(reply)
    client = make_client(timeout=0.5)
    log_many(client, 5)
    assert client.flush(20)
    assert indices(server) == list(range(5))


def test_gives_up_after_max_retries_and_reports_it(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A server that never recovers: the batch fails after max_retries, counted and reported."""
    server.script(*[503] * 10)
    errors = Errors()
    client = make_client(max_retries=2, on_error=errors)
    log_many(client, 4)
    assert client.flush(20)
    stats = client.stats()
    assert stats["failed"] == 4 and len(server.requests) == 3
    client.shutdown()
    assert LogwellErrorCode.SERVER_ERROR in errors.codes()
    assert all(e.retryable for e in errors.seen if e.code is LogwellErrorCode.SERVER_ERROR)


def test_backlog_bound_drops_newest_and_counts(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """With the server away, entries beyond max_queue_size are dropped and counted."""
    server.refuse_connections()
    errors = Errors()
    client = make_client(max_queue_size=10, batch_size=5, max_retries=1000, on_error=errors)
    log_many(client, 40)
    assert not client.flush(1.0)
    stats = client.stats()
    assert stats["dropped"]["backlog_full"] == 40 - 10 - 5 or stats["dropped"]["backlog_full"] >= 25
    server.accept_connections()
    assert client.flush(20)
    stats = client.stats()
    assert stats["logged"] == stats["delivered"] + stats["dropped"]["backlog_full"] == 40
    client.shutdown()
    assert LogwellErrorCode.QUEUE_OVERFLOW in errors.codes()


def test_shutdown_returns_within_its_timeout_when_the_server_never_answers(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A hung server cannot hold shutdown past its timeout; the loss is counted."""
    server.hang_all()
    client = make_client(timeout=30.0, shutdown_timeout=1.0)
    log_many(client, 5)
    started = time.monotonic()
    assert client.shutdown(1.0) is False
    assert time.monotonic() - started < 2.5
    server.release()


def accounting_balances(stats: Any) -> bool:
    return bool(stats["logged"] == stats["delivered"] + stats["rejected"] + stats["failed"]
                + sum(stats["dropped"].values()) + stats["backlog"])


def test_accounting_identity_holds_under_mixed_failures(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """logged = delivered + rejected + failed + dropped + backlog, whatever happened."""
    server.script(503, 400, Reply(reset=True), 413, 500)
    client = make_client(batch_size=7, max_retries=5, max_queue_size=50)
    log_many(client, 200)
    assert client.flush(30)
    stats = client.stats()
    assert accounting_balances(stats) and stats["backlog"] == 0
    assert stats["failed"] == 7 and stats["delivered"] + stats["dropped"]["backlog_full"] == 193


def test_shutdown_cuts_a_long_backoff_short(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A shipper waiting 30 s to retry still lets shutdown return on time, and exits soon."""
    server.script(*[503] * 50)
    client = make_client(retry_backoff=30.0, retry_backoff_max=30.0, shutdown_timeout=1.0)
    client.info("doomed")
    assert server.wait_for_requests(1, 10)
    shipper = client.stats()["shipper"]["pid"]
    started = time.monotonic()
    assert client.shutdown(1.0) is False
    assert time.monotonic() - started < 2.0
    assert wait_for(lambda: shipper not in shipper_pids(), 5.0)
    assert time.monotonic() - started < 4.0
