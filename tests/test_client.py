"""The public client API, compatible with the official SDK, end to end."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from logwell import Logwell, LogwellError, LogwellErrorCode, capture_source_location
from logwell.testing import IngestServer

pytestmark = pytest.mark.timeout(60)


def test_levels_service_and_metadata(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Each level method sends its level, the configured service and the metadata."""
    client = make_client(service="svc")
    client.debug("d")
    client.info("i", {"a": 1})
    client.warn("w")
    client.error("e")
    client.fatal("f", {"b": [1, 2]})
    assert client.flush(10)
    got = [(e["level"], e["message"], e.get("metadata")) for e in server.entries]
    assert got == [("debug", "d", None), ("info", "i", {"a": 1}), ("warn", "w", None),
                   ("error", "e", None), ("fatal", "f", {"b": [1, 2]})]
    assert {e["service"] for e in server.entries} == {"svc"}


def test_child_merges_metadata_and_overrides_service(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """A child adds its metadata, the call's own keys win, and the parent is unchanged."""
    parent = make_client(service="api")
    child = parent.child({"request_id": "r1", "shared": "child"}, service="worker")
    grandchild = child.child({"step": 2})
    child.info("from child", {"shared": "call"})
    grandchild.info("from grandchild")
    parent.info("from parent")
    assert parent.flush(10)
    by_message = {e["message"]: e for e in server.entries}
    assert by_message["from child"]["metadata"] == {"request_id": "r1", "shared": "call"}
    assert by_message["from child"]["service"] == "worker"
    assert by_message["from grandchild"]["metadata"] == {
        "request_id": "r1", "shared": "child", "step": 2}
    assert "metadata" not in by_message["from parent"]
    assert by_message["from parent"]["service"] == "api"
    with pytest.raises(LogwellError):
        parent.child(service="")


def test_child_shutdown_stops_only_the_child(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Shutting a child down stops that child; the parent keeps logging."""
    parent = make_client()
    child = parent.child({"c": 1})
    child.info("before")
    assert child.shutdown()
    child.info("after child shutdown")
    parent.info("parent still logs")
    assert parent.flush(10)
    assert [e["message"] for e in server.entries] == ["before", "parent still logs"]
    assert parent.stats()["dropped"]["after_shutdown"] == 1


def test_log_accepts_a_full_entry(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """log() keeps given fields, fills the rest, and drops an entry with no valid level."""
    client = make_client(service="default")
    client.log({"level": "error", "message": "given", "timestamp": "2026-01-01T00:00:00.000Z",
                "service": "other", "metadata": {"k": "v"}, "sourceFile": "x.py",
                "lineNumber": 7})
    client.log({"level": "WARNING", "message": "alias"})  # type: ignore[typeddict-item]
    client.log({"level": "verbose", "message": "no such level"})  # type: ignore[typeddict-item]
    client.log({"message": "no level"})  # type: ignore[typeddict-item]
    client.log("not a dict")  # type: ignore[arg-type]
    assert client.flush(10)
    first, second = server.entries
    assert first == {"level": "error", "message": "given", "timestamp": "2026-01-01T00:00:00.000Z",
                     "service": "other", "metadata": {"k": "v"}, "sourceFile": "x.py",
                     "lineNumber": 7}
    assert second["level"] == "warn" and second["service"] == "default"
    assert client.stats()["dropped"]["invalid"] == 3


def test_source_location_is_the_callers_line(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """capture_source_location points at the user's call site, through child() too."""
    client = make_client(capture_source_location=True)
    here = capture_source_location()
    assert here is not None
    client.info("direct")
    client.child({"x": 1}).warn("via child")
    client.log({"level": "info", "message": "via log"})
    assert client.flush(10)
    lines = [(e["sourceFile"], e["lineNumber"]) for e in server.entries]
    assert lines == [(__file__, here.line_number + 2), (__file__, here.line_number + 3),
                     (__file__, here.line_number + 4)]


def test_capture_source_location_past_the_stack_is_none() -> None:
    """Asking for a frame beyond the stack returns None, not an error."""
    assert capture_source_location(10_000) is None
    location = capture_source_location(0)
    assert location is not None and location.source_file == __file__


def test_callbacks_run_off_the_log_thread_and_may_raise(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """on_flush sees every delivered entry on another thread; a raising callback is harmless."""
    flushed: list[int] = []
    threads: set[int] = set()
    done = threading.Event()

    def on_flush(count: int) -> None:
        flushed.append(count)
        threads.add(threading.get_ident())
        if sum(flushed) >= 30:
            done.set()
        raise RuntimeError("callback bug")

    client = make_client(batch_size=10, on_flush=on_flush)
    for i in range(30):
        client.info(f"m{i}")
    assert done.wait(10)
    assert sum(flushed) == 30
    assert threading.get_ident() not in threads
    client.info("still fine")
    assert client.flush(10)


def test_errors_go_to_the_logwell_logger_without_on_error(
    server: IngestServer, make_client: Callable[..., Logwell], caplog: pytest.LogCaptureFixture
) -> None:
    """With no on_error, failures are logged (rate-limited) on the 'logwell' logger."""
    server.script(400, 400, 400)
    client = make_client(batch_size=1)
    with caplog.at_level(logging.WARNING, logger="logwell"):
        for i in range(3):
            client.info(f"m{i}")
        assert client.flush(10)
        client.shutdown()
    records = [r for r in caplog.records if r.name == "logwell"]
    assert len(records) == 1 and "VALIDATION_ERROR" in records[0].getMessage()


def test_queue_size_counts_what_is_not_settled(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """queue_size is what this process logged and the server has not settled yet."""
    server.refuse_connections()
    client = make_client(max_retries=1000)
    for i in range(7):
        client.info(f"m{i}")
    assert not client.flush(0.3)
    assert client.queue_size == 7
    server.accept_connections()
    assert client.flush(10)
    assert client.queue_size == 0


def test_flush_with_nothing_logged_returns_at_once(make_client: Callable[..., Logwell]) -> None:
    """flush() with no entries is immediately done."""
    assert make_client().flush(1)


def test_after_shutdown_log_calls_are_counted_drops(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Shutdown is idempotent; later log calls neither raise nor send."""
    client = make_client()
    client.info("one")
    assert client.shutdown()
    assert client.shutdown()
    client.info("two")
    client.log({"level": "info", "message": "three"})
    assert client.flush(1)
    assert [e["message"] for e in server.entries] == ["one"]
    stats = client.stats()
    assert stats["dropped"]["after_shutdown"] == 2 and stats["logged"] == 3


def test_context_managers(server: IngestServer) -> None:
    """with and async with shut the client down on exit."""
    config: Any = {"api_key": server.api_key, "endpoint": server.endpoint}
    with Logwell(config) as client:
        client.info("sync")

    async def main() -> None:
        async with Logwell(config) as aclient:
            aclient.info("async")
            assert await aclient.aflush(10)
        assert await aclient.ashutdown()

    asyncio.run(main())
    assert sorted(e["message"] for e in server.entries) == ["async", "sync"]


def test_api_key_stays_out_of_reprs_and_the_shipper_process(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """The key is in no repr, nor in the shipper's command line or environment."""
    client = make_client()
    client.info("x")
    assert client.flush(10)
    key = server.api_key
    assert key not in repr(client) and key not in repr(client.child({"a": 1}))
    pid = client.stats()["shipper"]["pid"]
    assert pid > 0
    for part in ("cmdline", "environ"):
        with open(f"/proc/{pid}/{part}", "rb") as f:
            assert key.encode() not in f.read()


def test_plain_http_to_another_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """Sending the key over plain http to a non-loopback host logs a warning."""
    with caplog.at_level(logging.WARNING, logger="logwell"):
        client = Logwell({"api_key": "lw_" + "k" * 32, "endpoint": "http://logs.invalid",
                          "shutdown_timeout": 0.5})
        client.shutdown(0.5)
    warnings = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1 and "k" * 32 not in warnings[0].getMessage()


def test_hostile_data_never_raises_and_is_counted(
    server: IngestServer, make_client: Callable[..., Logwell]
) -> None:
    """Unserializable metadata, NULs, blank and huge messages: no exception, all accounted."""

    class Weird:
        def __repr__(self) -> str:
            raise ValueError("no")

    loop: dict[str, Any] = {}
    loop["loop"] = loop
    client = make_client(max_entry_bytes=4_096)
    client.info("obj", {"w": Weird(), "s": {1, 2}, 3: "int key"})
    client.info("cycle", loop)
    client.info("nul\x00inside", {"k\x00": "v\x00"})
    client.info("   ")
    client.info("x" * 100_000)
    client.info(None)  # type: ignore[arg-type]
    client.info("md", 42)  # type: ignore[arg-type]
    assert client.flush(10)
    stats = client.stats()
    assert stats["delivered"] == 7 == stats["logged"]
    assert stats["altered"] == 6 and stats["truncated"] == 1
    messages = [e["message"] for e in server.entries]
    assert "nul\ufffdinside" in messages and "(empty message)" in messages
    assert any(m.startswith("xxx") and "truncated by logwell" in m for m in messages)


def test_a_shipper_that_cannot_start_costs_drops_not_exceptions(
    server: IngestServer, make_client: Callable[..., Logwell], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no interpreter to run, log calls are counted drops; restarts back off, then recover."""
    errors: list[Exception] = []
    reporters: set[int] = set()

    def on_error(error: Exception) -> None:
        reporters.add(threading.get_ident())
        errors.append(error)

    monkeypatch.setattr("sys.executable", "/bin/false")
    client = make_client(on_error=on_error)
    for i in range(200):
        client.info(f"lost {i}")
    stats = client.stats()
    assert stats["logged"] == 200 and stats["delivered"] == 0
    assert stats["dropped"]["no_shipper"] + stats["dropped"]["shipper_lost"] + stats[
        "backlog"] == 200
    assert stats["shipper"]["restarts"] <= 2
    assert threading.get_ident() not in reporters
    client.flush(0.1)  # also runs pending callbacks
    assert any(isinstance(e, LogwellError) and e.code is LogwellErrorCode.NETWORK_ERROR
               for e in errors)
    monkeypatch.undo()
    client._pipeline._restart_after = 0.0  # skip the back-off pause in this test
    client.info("after recovery")
    assert client.flush(10)
    assert [e["message"] for e in server.entries] == ["after recovery"]
