"""LogwellHandler: records through a real shipper process to the test server."""

from __future__ import annotations

import inspect
import logging
import logging.config
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import shipper_pids, wait_for
from logwell import Logwell, LogwellError, LogwellErrorCode
from logwell.handler import LogwellHandler, level_name
from logwell.testing import IngestServer, Reply

TIMEOUT = 10.0


class PaymentError(Exception):
    """An application exception with a module-qualified name."""


class Recorder(logging.Handler):
    """Keeps records and sets an event when one arrives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@pytest.fixture
def make_handler(server: IngestServer) -> Iterator[Callable[..., LogwellHandler]]:
    """Build handlers for ``server`` from options; each is closed when the test ends."""
    handlers: list[LogwellHandler] = []

    def make(**options: Any) -> LogwellHandler:
        config: dict[str, Any] = {
            "api_key": server.api_key,
            "endpoint": server.endpoint,
            "flush_interval": 0.05,
            "retry_backoff": 0.01,
            "retry_backoff_max": 0.1,
        }
        config.update(options)
        handler = LogwellHandler(**config)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        handler.close()


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the test's own at DEBUG that does not propagate to the root."""
    log = logging.getLogger(f"tests.handler.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


@pytest.fixture
def root_at_debug() -> Iterator[logging.Logger]:
    """The root logger at DEBUG; its level and handlers are restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.DEBUG)
    yield root
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


def only(server: IngestServer, count: int = 1) -> list[dict[str, Any]]:
    """Wait for ``count`` entries and return them; there must be no more."""
    assert server.wait_for_entries(count, TIMEOUT)
    entries = server.entries
    assert len(entries) == count, entries
    return entries


def run_script(source: str, server: IngestServer, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script that gets the server's endpoint and key from the environment."""
    environment = {
        **os.environ,
        "LOGWELL_ENDPOINT": server.endpoint,
        "LOGWELL_API_KEY": server.api_key,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=environment, capture_output=True, text=True, timeout=60,
    )


# -- what an entry holds ---------------------------------------------------------------


@pytest.mark.timeout(30)
def test_record_becomes_a_full_entry(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """Message, level, timestamp, service, logger, process, thread and the call site arrive."""
    handler = make_handler(service="billing")
    seen = Recorder()
    handler.addFilter(lambda record: seen.emit(record) or True)
    logger.addHandler(handler)
    frame = inspect.currentframe()
    assert frame is not None
    line = frame.f_lineno + 1
    logger.info("user %s signed in", "ann")
    (entry,) = only(server)
    record = seen.records[0]
    millis = int((record.created - int(record.created)) * 1000)
    assert entry == {
        "level": "info",
        "message": "user ann signed in",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{millis:03d}Z",
        "service": "billing",
        "metadata": {
            "logger": logger.name,
            "process": os.getpid(),
            "thread": threading.current_thread().name,
        },
        "sourceFile": __file__,
        "lineNumber": line,
    }


@pytest.mark.parametrize(
    ("levelno", "expected"),
    [
        (logging.NOTSET, "debug"), (5, "debug"), (logging.DEBUG, "debug"), (15, "debug"),
        (logging.INFO, "info"), (25, "info"), (logging.WARNING, "warn"), (35, "warn"),
        (logging.ERROR, "error"), (45, "error"), (logging.CRITICAL, "fatal"), (99, "fatal"),
        (-3, "debug"), (16, "info"), (44, "error"), (46, "fatal"),
    ],
)
@pytest.mark.timeout(10)
def test_levels_map_to_the_nearest_server_level(levelno: int, expected: str) -> None:
    """Standard levels map one to one; custom levels take the nearest, the lower on a tie."""
    assert level_name(levelno) == expected


@pytest.mark.timeout(30)
def test_custom_levels_arrive_mapped(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """TRACE (5), NOTICE (25) and SUCCESS (35) records arrive with the nearest level."""
    logger.setLevel(1)
    logger.addHandler(make_handler())
    for levelno in (5, 25, 35, logging.CRITICAL):
        logger.log(levelno, "level %d", levelno)
    entries = only(server, 4)
    assert [e["level"] for e in entries] == ["debug", "info", "warn", "fatal"]


@pytest.mark.timeout(30)
def test_extra_fields_become_metadata(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """extra= fields, values added by a filter and non-JSON values arrive as metadata."""
    handler = make_handler()

    def add_request_id(record: logging.LogRecord) -> bool:
        record.request_id = "req-9"
        return True

    handler.addFilter(add_request_id)
    logger.addHandler(handler)
    logger.warning(
        "slow query",
        extra={"ms": 812.5, "tables": ["a", "b"], "owner": {"team": "db"}, "when": PaymentError},
    )
    (entry,) = only(server)
    metadata = entry["metadata"]
    assert metadata["ms"] == 812.5
    assert metadata["tables"] == ["a", "b"]
    assert metadata["owner"] == {"team": "db"}
    assert metadata["request_id"] == "req-9"
    assert "PaymentError" in metadata["when"]
    assert set(metadata) == {
        "logger", "process", "thread", "ms", "tables", "owner", "request_id", "when",
    }


@pytest.mark.timeout(30)
def test_extras_found_after_another_handler_formatted_the_record(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """A console handler's formatter runs first (adding message and asctime): extras still ship."""
    console = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(console)
    logger.addHandler(make_handler())
    try:
        logger.info("plain")
        logger.info("with extra", extra={"order": 7, "logger": "not the logger"})
        first, second = only(server, 2)
    finally:
        console.close()
        assert console.stream is not None
        console.stream.close()
    assert set(first["metadata"]) == {"logger", "process", "thread"}
    assert second["metadata"]["order"] == 7
    assert second["metadata"]["logger"] == logger.name, "the record's own logger name wins"
    assert "message" not in second["metadata"] and "asctime" not in second["metadata"]


@pytest.mark.timeout(30)
def test_formatter_output_is_the_message(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """With a formatter set, the message is the formatter's output."""
    handler = make_handler()
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.error("disk %d%% full", 97)
    (entry,) = only(server)
    assert entry["message"] == f"[ERROR] {logger.name}: disk 97% full"
    assert entry["level"] == "error"


@pytest.mark.timeout(30)
def test_exception_with_its_chain_in_metadata(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """logger.exception() sends the type, message and the whole chained traceback."""
    logger.addHandler(make_handler())
    try:
        try:
            try:
                {}["card"]
            except KeyError as exc:
                raise ValueError("card missing") from exc
        except ValueError:
            raise PaymentError("charge failed")  # noqa: B904
    except PaymentError:
        logger.exception("payment %s failed", "p-1")
    (entry,) = only(server)
    assert entry["level"] == "error"
    assert entry["message"] == "payment p-1 failed"
    exception = entry["metadata"]["exception"]
    assert exception["type"].endswith(".PaymentError") and "." in exception["type"]
    assert exception["message"] == "charge failed"
    trace = exception["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "KeyError: 'card'" in trace
    assert "The above exception was the direct cause of the following exception" in trace
    assert "ValueError: card missing" in trace
    assert "During handling of the above exception, another exception occurred" in trace
    assert trace.endswith("PaymentError: charge failed")


@pytest.mark.timeout(30)
def test_builtin_exception_type_and_stack_info(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """A builtin exception keeps its plain name; stack_info arrives as metadata.stack."""
    logger.addHandler(make_handler())
    logger.warning("no exception here", exc_info=(None, None, None))
    logger.info("where am I", stack_info=True)
    logger.error("both", exc_info=ZeroDivisionError("zero"), stack_info=True)
    plain, stack, both = only(server, 3)
    assert set(plain["metadata"]) == {"logger", "process", "thread"}
    assert stack["metadata"]["stack"].startswith("Stack (most recent call last):")
    assert "test_builtin_exception_type_and_stack_info" in stack["metadata"]["stack"]
    assert both["metadata"]["exception"]["type"] == "ZeroDivisionError"
    assert both["metadata"]["exception"]["traceback"].endswith("ZeroDivisionError: zero")
    assert "stack" in both["metadata"]


@pytest.mark.timeout(30)
def test_record_whose_arguments_do_not_fit_still_ships(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A format/argument mismatch ships the raw message and the error, and prints nothing."""
    handler = make_handler()
    # Straight to the handler: pytest's own capture handlers raise on such a record.
    handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d items",
                                     ("three",), None))
    (entry,) = only(server)
    assert entry["message"] == "%d items"
    assert entry["metadata"]["logwell_format_error"].startswith("TypeError: %d format")
    assert entry["metadata"]["logwell_args"] == "('three',)"
    assert "Logging error" not in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_unknown_call_site_is_left_out(
    server: IngestServer, make_handler: Callable[..., LogwellHandler]
) -> None:
    """A record without a line number (lineno 0) ships without sourceFile and lineNumber."""
    handler = make_handler()
    handler.handle(logging.makeLogRecord({"msg": "from nowhere"}))
    handler.handle(logging.makeLogRecord({"name": "app", "msg": "ok", "lineno": 3}))
    first, second = only(server, 2)
    assert "sourceFile" not in first and "lineNumber" not in first
    assert first["metadata"]["logger"] is None, "a hand-made record without a name ships too"
    assert second["lineNumber"] == 3


@pytest.mark.timeout(30)
def test_handler_filters_apply(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """A filter on the handler can drop records; the handler's level is respected."""
    handler = make_handler(level="INFO")
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    logger.addHandler(handler)
    logger.debug("below the handler's level")
    logger.info("a secret value")
    logger.info("kept")
    (entry,) = only(server)
    assert entry["message"] == "kept"


@pytest.mark.timeout(30)
def test_odd_records_still_ship(
    server: IngestServer, make_handler: Callable[..., LogwellHandler]
) -> None:
    """No process or thread info, an extra set before the standard attributes, a bad __str__."""

    class EarlyRecord(logging.LogRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.tenant = "t-1"  # set before LogRecord's own attributes
            super().__init__(*args, **kwargs)

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    handler = make_handler()
    handler.handle(logging.makeLogRecord(
        {"name": "bare", "msg": "no process info", "process": None, "threadName": None}
    ))
    handler.handle(EarlyRecord("early", logging.INFO, __file__, 1, "early extra", (), None))
    handler.handle(logging.makeLogRecord({
        "name": "odd", "msg": "weird exception", "levelno": logging.ERROR,
        "exc_info": (Unprintable, Unprintable(), None),
    }))
    bare, early, odd = only(server, 3)
    assert bare["metadata"] == {"logger": "bare"}
    assert early["metadata"]["tenant"] == "t-1"
    assert odd["metadata"]["exception"]["type"].endswith("Unprintable")
    assert odd["metadata"]["exception"]["message"] == "<unprintable Unprintable>"


@pytest.mark.timeout(30)
def test_a_record_that_cannot_be_read_goes_to_handle_error(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A record the handler cannot read is reported the logging way, not raised."""
    handler = make_handler()
    record = logging.makeLogRecord({"name": "broken", "msg": "m", "created": "yesterday"})
    assert handler.handle(record) is True
    assert "--- Logging error ---" in capsys.readouterr().err
    handler.handle(logging.makeLogRecord({"name": "fine", "msg": "next"}))
    (entry,) = only(server)
    assert entry["message"] == "next"


@pytest.mark.timeout(30)
def test_flush_and_close_never_raise(server: IngestServer) -> None:
    """A client whose flush raises does not make flush() or close() raise."""

    class Exploding(Logwell):
        def flush(self, timeout: float | None = None) -> bool:
            raise RuntimeError("boom")

    client = Exploding({"api_key": server.api_key, "endpoint": server.endpoint})
    handler = LogwellHandler(client=client)
    assert "LogwellHandler" in repr(handler) and server.endpoint in repr(handler)
    assert handler.flush() is False
    handler.close()
    assert client.shutdown(5.0)


# -- construction ---------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_wrapping_a_client_uses_its_service_and_context(
    server: IngestServer, make_client: Callable[..., Logwell], logger: logging.Logger
) -> None:
    """A handler around a child logger ships with its service and metadata; close() keeps it."""
    client = make_client(service="api")
    handler = LogwellHandler(client=client.child({"region": "eu", "logger": "ctx"}, service="web"))
    logger.addHandler(handler)
    logger.info("hello", extra={"region": "us"})
    handler.close()
    client.info("the client still works")
    first, second = only(server, 2)
    assert first["service"] == "web"
    assert first["metadata"]["region"] == "us", "the record's extra wins over the context"
    assert first["metadata"]["logger"] == logger.name
    assert second["message"] == "the client still works"
    assert client.stats()["dropped"]["after_shutdown"] == 0


@pytest.mark.timeout(30)
def test_invalid_construction_raises_logwell_error() -> None:
    """Bad options, a non-client, or both client and options raise INVALID_CONFIG, no shipper."""
    before = shipper_pids()
    with pytest.raises(LogwellError) as bad_key:
        LogwellHandler(api_key="nope", endpoint="http://127.0.0.1:9")
    assert bad_key.value.code is LogwellErrorCode.INVALID_CONFIG
    with pytest.raises(LogwellError, match="Did you mean 'batch_size'"):
        LogwellHandler(api_key="lw_" + "a" * 32, endpoint="http://127.0.0.1:9", batchsize=5)
    with pytest.raises(LogwellError, match=r"must be a logwell\.Logwell"):
        LogwellHandler(client="not a client")  # type: ignore[arg-type]
    with pytest.raises(LogwellError, match="missing 'endpoint'"):
        LogwellHandler(client=None, api_key="lw_" + "a" * 32)
    assert shipper_pids() == before


@pytest.mark.timeout(30)
def test_client_and_options_together_are_refused(make_client: Callable[..., Logwell]) -> None:
    """Passing client= together with client options is an INVALID_CONFIG error."""
    with pytest.raises(LogwellError, match="either client= or") as error:
        LogwellHandler(client=make_client(), service="x")
    assert error.value.code is LogwellErrorCode.INVALID_CONFIG


@pytest.mark.timeout(30)
def test_dictconfig_error_comes_from_the_handler() -> None:
    """dictConfig with a bad option fails with logging's ValueError caused by a LogwellError."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "logwell": {"class": "logwell.handler.LogwellHandler", "api_key": "lw_" + "a" * 32},
        },
    }
    with pytest.raises(ValueError, match="Unable to configure handler 'logwell'") as error:
        logging.config.dictConfig(config)
    assert isinstance(error.value.__cause__, LogwellError)
    assert "'endpoint'" in str(error.value.__cause__)


# -- life cycle -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_flush_waits_for_delivery(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """flush() returns once what was logged is at the server, even with a long flush_interval."""
    handler = make_handler(flush_interval=60.0)
    logger.addHandler(handler)
    for i in range(120):
        logger.info("record %d", i)
    assert handler.flush() is True
    assert len(server.entries) == 120


@pytest.mark.timeout(30)
def test_close_drains_and_shuts_down_its_own_client(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """close() delivers what is pending, stops the client it built, and can be called twice."""
    handler = make_handler(flush_interval=60.0)
    logger.addHandler(handler)
    for i in range(200):
        logger.info("record %d", i)
    handler.close()
    assert len(server.entries) == 200
    logger.info("after close")  # still attached by mistake: counted, not raised
    handler.close()
    assert handler.flush() is True
    stats = handler.client.stats()
    assert stats["delivered"] == 200
    assert stats["dropped"]["after_shutdown"] == 1


@pytest.mark.timeout(30)
def test_close_is_bounded_when_the_server_hangs(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """With a hung server, close(timeout) returns after about that long."""
    handler = make_handler(timeout=1.0, shutdown_timeout=0.5)
    logger.addHandler(handler)
    server.hang_all()
    logger.info("never answered")
    assert server.wait_for_requests(1, TIMEOUT)
    began = time.monotonic()
    handler.close()
    assert time.monotonic() - began < 3.0
    server.release()


@pytest.mark.timeout(60)
def test_many_threads_share_one_handler(
    server: IngestServer, make_handler: Callable[..., LogwellHandler], logger: logging.Logger
) -> None:
    """4 threads log 500 records each through one handler: each arrives once."""
    handler = make_handler(batch_size=100)
    logger.addHandler(handler)

    def produce(thread: int) -> None:
        for i in range(500):
            logger.info("entry", extra={"t": thread, "i": i})

    threads = [threading.Thread(target=produce, args=(t,), name=f"producer-{t}") for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handler.flush()
    entries = only(server, 2_000)
    keys = {(e["metadata"]["t"], e["metadata"]["i"]) for e in entries}
    assert len(keys) == 2_000
    assert {e["metadata"]["thread"] for e in entries} == {f"producer-{t}" for t in range(4)}


# -- no feedback loop -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_sdk_loggers_are_ignored_on_the_root_at_debug(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    root_at_debug: logging.Logger,
) -> None:
    """Records of 'logwell' and 'logwell.*' never ship; 'logwellish' and others do."""
    handler = make_handler()
    root_at_debug.addHandler(handler)
    logging.getLogger("logwell").warning("sdk diagnostic")
    logging.getLogger("logwell._pipeline").error("sdk internals")
    assert handler.handle(logging.makeLogRecord({"name": "logwell.x", "msg": "m"})) is False
    logging.getLogger("logwellish").info("an application logger")
    logging.getLogger("app").debug("app debug")
    entries = only(server, 2)
    assert [e["metadata"]["logger"] for e in entries] == ["logwellish", "app"]


@pytest.mark.timeout(30)
def test_sdk_warning_during_construction_does_not_loop(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    root_at_debug: logging.Logger,
) -> None:
    """The plain-http warning a second handler logs while being built is not shipped."""
    root_at_debug.addHandler(make_handler())
    seen = Recorder()
    logging.getLogger("logwell").addHandler(seen)
    try:
        other = LogwellHandler(
            api_key=server.api_key, endpoint="http://192.0.2.1:9", shutdown_timeout=0.2
        )
        other.close()
    finally:
        logging.getLogger("logwell").removeHandler(seen)
    assert any("plain http" in r.getMessage() for r in seen.records)
    logging.getLogger("app").info("after")
    (entry,) = only(server)
    assert entry["message"] == "after"


@pytest.mark.timeout(30)
def test_delivery_error_diagnostic_does_not_loop(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    root_at_debug: logging.Logger,
) -> None:
    """A refused batch makes the SDK log a warning (at the next flush); it never ships."""
    handler = make_handler()
    root_at_debug.addHandler(handler)
    seen = Recorder()
    logging.getLogger("logwell").addHandler(seen)
    try:
        server.script(Reply(400))
        logging.getLogger("app").info("refused by the server")
        assert handler.flush()  # with no on_error, diagnostics are read here (or every second)
        assert seen.arrived.wait(TIMEOUT)
        logging.getLogger("app").info("accepted")
        assert handler.flush()
    finally:
        logging.getLogger("logwell").removeHandler(seen)
    assert "refused the batch" in seen.records[0].getMessage()
    entries = server.entries
    assert [e["message"] for e in entries] == ["accepted"]


@pytest.mark.timeout(30)
def test_shipper_retries_log_nothing_back(
    server: IngestServer,
    make_handler: Callable[..., LogwellHandler],
    root_at_debug: logging.Logger,
) -> None:
    """Resets and 500s make the shipper's urllib3 retry; none of that reaches the handler."""
    handler = make_handler()
    root_at_debug.addHandler(handler)
    server.script(Reply(reset=True), Reply(500), Reply(503))
    logging.getLogger("app").info("delivered after retries")
    assert handler.flush()
    assert server.wait_for_requests(4, TIMEOUT)
    (entry,) = only(server)
    assert entry["metadata"]["logger"] == "app"
    assert handler.client.stats()["shipper"]["retries"] >= 3


# -- processes ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_interpreter_exit_delivers_without_close(server: IngestServer) -> None:
    """A script that never closes its handler still delivers everything when it exits."""
    result = run_script(
        """
        import logging, os
        from logwell.handler import LogwellHandler
        handler = LogwellHandler(api_key=os.environ["LOGWELL_API_KEY"],
                                 endpoint=os.environ["LOGWELL_ENDPOINT"], flush_interval=60.0)
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        for i in range(500):
            logging.getLogger("exit.test").info("record %d", i)
        """,
        server,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert server.wait_for_entries(500, TIMEOUT)
    assert len(server.entries) == 500


@pytest.mark.timeout(60)
def test_explicit_logging_shutdown_then_more_records(server: IngestServer) -> None:
    """logging.shutdown() drains; records after it are dropped quietly and the exit is clean."""
    result = run_script(
        """
        import logging, os
        from logwell.handler import LogwellHandler
        handler = LogwellHandler(api_key=os.environ["LOGWELL_API_KEY"],
                                 endpoint=os.environ["LOGWELL_ENDPOINT"], flush_interval=60.0)
        log = logging.getLogger("shutdown.test")
        log.addHandler(handler)
        log.warning("before shutdown")
        logging.shutdown()
        print(handler.client.stats()["delivered"])
        log.warning("after shutdown")
        print(handler.client.stats()["dropped"]["after_shutdown"])
        """,
        server,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
    assert result.stderr == ""
    assert [e["message"] for e in server.entries] == ["before shutdown"]


@pytest.mark.timeout(60)
def test_exit_is_bounded_when_the_server_is_gone(
    server: IngestServer, tmp_path: pathlib.Path
) -> None:
    """With nothing listening, the interpreter exits about shutdown_timeout after its last line."""
    server.refuse_connections()
    script = tmp_path / "gone.py"
    script.write_text(textwrap.dedent(
        """
        import logging, os, time
        from logwell.handler import LogwellHandler
        handler = LogwellHandler(api_key=os.environ["LOGWELL_API_KEY"],
                                 endpoint=os.environ["LOGWELL_ENDPOINT"],
                                 shutdown_timeout=2.0, retry_backoff=0.05)
        logging.getLogger().addHandler(handler)
        logging.getLogger("gone").error("nobody listens")
        print(time.time(), flush=True)
        """
    ))
    env = {**os.environ, "LOGWELL_ENDPOINT": server.endpoint, "LOGWELL_API_KEY": server.api_key}
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        # Not run(capture_output=True): the shipper inherits the pipes and outlives the script.
        process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=stdout)
        assert process.wait(30) == 0
    exited = time.time()
    elapsed = exited - float(out.read_text())
    assert elapsed < 3.5, f"exit took {elapsed:.1f}s after the last line (shutdown_timeout=2)"


@pytest.mark.fork
@pytest.mark.timeout(60)
def test_forked_children_log_through_the_parents_handler(server: IngestServer) -> None:
    """Children forked after the handler was built ship through it with their own pid."""
    result = run_script(
        """
        import logging, os
        from logwell.handler import LogwellHandler
        handler = LogwellHandler(api_key=os.environ["LOGWELL_API_KEY"],
                                 endpoint=os.environ["LOGWELL_ENDPOINT"], flush_interval=0.05)
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        log = logging.getLogger("fork.test")
        log.info("parent before fork")
        children = []
        for n in range(2):
            pid = os.fork()
            if pid == 0:
                for i in range(50):
                    log.info("child %d record %d", n, i)
                os._exit(0)  # like a prefork pool: no atexit, no flush
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        log.info("parent after children")
        print(os.getpid(), *children)
        """,
        server,
    )
    assert result.returncode == 0, result.stderr
    parent, *children = map(int, result.stdout.split())
    assert server.wait_for_entries(102, TIMEOUT)
    entries = server.entries
    assert len(entries) == 102
    by_process: dict[int, int] = {}
    for entry in entries:
        process = entry["metadata"]["process"]
        by_process[process] = by_process.get(process, 0) + 1
    assert by_process == {parent: 2, children[0]: 50, children[1]: 50}
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in children), 5.0)
