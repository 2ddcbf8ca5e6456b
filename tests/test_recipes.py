"""The README's logging recipes, each run against the real library and the test server."""

from __future__ import annotations

import logging
import logging.config
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from conftest import wait_for
from logwell.handler import LogwellHandler
from logwell.testing import IngestServer

APPS = pathlib.Path(__file__).resolve().parent / "apps"
BIN = pathlib.Path(sys.executable).parent
TIMEOUT = 20.0

Entry = dict[str, Any]


def wait_for_matching(
    server: IngestServer, predicate: Callable[[Entry], bool], count: int = 1,
    timeout: float = TIMEOUT,
) -> list[Entry]:
    """Wait, on the server's arrivals, for ``count`` entries that satisfy ``predicate``."""
    deadline = time.monotonic() + timeout
    while True:
        entries = server.entries
        matching = [entry for entry in entries if predicate(entry)]
        if len(matching) >= count:
            return matching
        left = deadline - time.monotonic()
        if left <= 0 or not server.wait_for_entries(len(entries) + 1, left):
            messages = [e["message"] for e in server.entries]
            pytest.fail(f"no {count} matching entries within {timeout}s; got {messages}")


def wait_for_entry(
    server: IngestServer, predicate: Callable[[Entry], bool], timeout: float = TIMEOUT
) -> Entry:
    """Wait for the first entry that satisfies ``predicate``."""
    return wait_for_matching(server, predicate, 1, timeout)[0]


def from_logger(name: str, text: str) -> Callable[[Entry], bool]:
    """A predicate: an entry of logger ``name`` whose message contains ``text``."""
    return lambda e: e["metadata"].get("logger") == name and text in e["message"]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def app_env(server: IngestServer, **extra: str) -> dict[str, str]:
    """The environment of an app under tests/apps: the server's endpoint and key."""
    return {
        **os.environ,
        "LOGWELL_ENDPOINT": server.endpoint,
        "LOGWELL_API_KEY": server.api_key,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a process group this test started (only after a failure)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.wait(10)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what dictConfig does to the process's loggers; close the handlers it made."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved = {
        name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
        for name, lg in [("", root), *manager.loggerDict.items()]
        if isinstance(lg, logging.Logger)
    }
    yield
    made: set[logging.Handler] = set()
    for name, lg in [("", root), *manager.loggerDict.items()]:
        if not isinstance(lg, logging.Logger):
            continue
        level, handlers, propagate, disabled = saved.get(name, (logging.NOTSET, [], True, False))
        made.update(h for h in lg.handlers if h not in handlers)
        lg.handlers = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled
    for handler in made:
        handler.close()


# -- dictConfig, the way Django's LOGGING setting is written ----------------------------


class RequestIdFilter(logging.Filter):
    """Stands in for a middleware's filter that puts the request id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = "req-42"
        return True


@pytest.mark.timeout(30)
def test_django_style_logging_dict(server: IngestServer, restore_logging: None) -> None:
    """A Django-style LOGGING dict wires the handler to named loggers and the root."""
    logging_settings = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "verbose": {"format": "{levelname} {asctime} {name} {message}", "style": "{"},
        },
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler", "formatter": "verbose",
                "stream": "ext://sys.stderr",
            },
            "logwell": {
                "class": "logwell.handler.LogwellHandler",
                "level": "INFO",
                "filters": ["request_id"],
                "api_key": server.api_key,
                "endpoint": server.endpoint,
                "service": "shop",
                "flush_interval": 0.05,
            },
        },
        "root": {"handlers": ["console", "logwell"], "level": "WARNING"},
        "loggers": {
            "django": {"handlers": ["console", "logwell"], "level": "INFO", "propagate": False},
            "shop": {"handlers": ["logwell"], "level": "DEBUG", "propagate": False},
        },
    }
    logging.config.dictConfig(logging_settings)
    logging.getLogger("django.request").error(
        "Internal Server Error: %s", "/cart", extra={"status_code": 500}
    )
    logging.getLogger("shop.cart").debug("below the handler's level")
    logging.getLogger("shop.cart").info("item added", extra={"sku": "A-1"})
    logging.getLogger("some.library").warning("via the root logger")
    logging.getLogger("some.library").info("below the root's level")
    assert server.wait_for_entries(3, TIMEOUT)
    django, shop, library = server.entries
    assert django["level"] == "error"
    assert django["message"] == "Internal Server Error: /cart"
    assert django["service"] == "shop"
    assert django["metadata"]["logger"] == "django.request"
    assert django["metadata"]["status_code"] == 500
    assert django["metadata"]["request_id"] == "req-42"
    assert shop["metadata"]["sku"] == "A-1" and shop["level"] == "info"
    assert library["metadata"]["logger"] == "some.library" and library["level"] == "warn"
    assert django["sourceFile"] == __file__
    handler = logging.getLogger("shop").handlers[0]
    assert isinstance(handler, LogwellHandler)
    assert handler.flush()
    assert len(server.entries) == 3


# -- Gunicorn: logconfig_dict ---------------------------------------------------------


@pytest.mark.fleet
@pytest.mark.timeout(90)
def test_gunicorn_error_and_access_logs_ship(server: IngestServer, tmp_path: pathlib.Path) -> None:
    """Gunicorn's own error log, its access log and the app's records arrive; SIGTERM ends all."""
    app_dir = APPS / "handler_gunicorn"
    with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
        master = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(app_dir / "gunicorn_conf.py"),
             "--chdir", str(app_dir), "handler_gunicorn_app:app"],
            env=app_env(server), stdout=out, stderr=err, start_new_session=True,
        )
    try:
        listening = wait_for_entry(server, from_logger("gunicorn.error", "Listening at: http"))
        match = re.search(r"http://127\.0\.0\.1:(\d+)", listening["message"])
        assert match, listening
        port = int(match.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?x=1", timeout=10) as reply:
            assert reply.read() == b"hello"
        access = wait_for_entry(
            server, from_logger("gunicorn.access", '"GET /hello?x=1 HTTP/1.1" 200')
        )
        served = wait_for_entry(server, from_logger("handler_gunicorn_app", "served /hello"))
        booted = wait_for_matching(
            server, lambda e: e["message"].startswith("Booting worker with pid: "), 2
        )
        workers = {int(e["message"].rsplit(" ", 1)[1]) for e in booted}
        assert len(workers) == 2, booted

        master.send_signal(signal.SIGTERM)
        assert master.wait(60) == 0
        last = wait_for_entry(server, from_logger("gunicorn.error", "Shutting down: Master"))
    finally:
        stop_group(master)

    assert listening["metadata"]["process"] == master.pid
    assert listening["service"] == "web" and listening["level"] == "info"
    assert access["level"] == "info"
    assert access["metadata"]["process"] in workers
    assert access["sourceFile"].endswith(os.path.join("gunicorn", "glogging.py"))
    assert served["metadata"]["path"] == "/hello"
    assert served["metadata"]["process"] in workers
    assert served["sourceFile"] == str(app_dir / "handler_gunicorn_app.py")
    assert last["metadata"]["process"] == master.pid
    messages = [e["message"] for e in server.entries]
    assert "Handling signal: term" in messages
    for pid in workers:
        assert f"Worker exiting (pid: {pid})" in messages
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 10.0)
    assert b"Listening at" in (tmp_path / "stderr").read_bytes(), "the console still works"


# -- Celery: worker and task loggers --------------------------------------------------


@pytest.mark.fleet
@pytest.mark.timeout(120)
def test_celery_worker_and_task_logs_ship_with_task_id(
    server: IngestServer, tmp_path: pathlib.Path
) -> None:
    """A real prefork worker ships its own logs and the task's, with task_id and task_name."""
    app_dir = APPS / "handler_celery"
    broker = tmp_path / "broker"
    broker.mkdir()
    env = app_env(
        server,
        HANDLER_CELERY_BROKER_DIR=str(broker),
        PYTHONPATH=os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")])),
    )
    with (tmp_path / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "handler_celery_app", "worker", "--pool=prefork",
             "--concurrency=1", "--loglevel=INFO", "--without-heartbeat", "--without-mingle",
             "--without-gossip", "--hostname=handler@test"],
            env=env, cwd=app_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        ready = wait_for_entry(server, lambda e: e["message"] == "handler@test ready.", 60.0)
        task_id = "recipe-task-1"
        subprocess.run(
            [sys.executable, "-c",
             f"from handler_celery_app import add; add.apply_async((2, 3), task_id={task_id!r})"],
            env=env, cwd=app_dir, check=True, timeout=60,
        )
        task_log = wait_for_entry(server, lambda e: e["message"] == "adding 2 and 3")
        succeeded = wait_for_entry(
            server, lambda e: e["message"].startswith(f"Task handler_celery_app.add[{task_id}]")
            and "succeeded" in e["message"],
        )
        pool_pid = task_log["metadata"]["process"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        stop_group(worker)

    assert ready["metadata"]["process"] == worker.pid
    assert ready["service"] == "worker"
    metadata = task_log["metadata"]
    assert metadata["task_id"] == task_id
    assert metadata["task_name"] == "handler_celery_app.add"
    assert metadata["logger"] == "handler_celery_app"
    assert (metadata["x"], metadata["y"]) == (2, 3)
    assert pool_pid != worker.pid, "the task ran in a forked pool process"
    assert task_log["sourceFile"] == str(app_dir / "handler_celery_app.py")
    assert succeeded["metadata"]["task_id"] == task_id
    counts: dict[str, int] = {}
    for entry in server.entries:
        counts[entry["message"]] = counts.get(entry["message"], 0) + 1
    assert counts["adding 2 and 3"] == 1, "one handler per process: no duplicates"
    assert wait_for(lambda: not alive(pool_pid), 10.0)


# -- structlog ------------------------------------------------------------------------


@pytest.fixture
def structlog_to_stdlib() -> Iterator[None]:
    """structlog configured to hand its event dict to logging as ``extra``."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


@pytest.mark.timeout(30)
def test_structlog_event_dict_becomes_metadata(
    server: IngestServer, structlog_to_stdlib: None
) -> None:
    """structlog events arrive with the event as message and the rest of the dict as metadata."""
    stdlib_logger = logging.getLogger("shop.orders")
    stdlib_logger.setLevel(logging.INFO)
    stdlib_logger.propagate = False
    handler = LogwellHandler(
        api_key=server.api_key, endpoint=server.endpoint, service="shop", flush_interval=0.05
    )
    stdlib_logger.addHandler(handler)
    try:
        structlog.contextvars.bind_contextvars(request_id="req-7")
        log = structlog.get_logger("shop.orders").bind(order_id=7)
        log.debug("filtered by the stdlib level")
        log.info("order placed", amount=12.5, items=["a", "b"])
        try:
            raise TimeoutError("card gateway")
        except TimeoutError:
            log.exception("charge failed", attempt=2)
        assert server.wait_for_entries(2, TIMEOUT)
    finally:
        stdlib_logger.removeHandler(handler)
        stdlib_logger.propagate = True
        stdlib_logger.setLevel(logging.NOTSET)
        handler.close()
    placed, failed = server.entries
    assert placed["message"] == "order placed" and placed["level"] == "info"
    assert placed["metadata"] == {
        "logger": "shop.orders", "process": os.getpid(), "thread": "MainThread",
        "request_id": "req-7", "order_id": 7, "amount": 12.5, "items": ["a", "b"],
    }
    assert placed["sourceFile"] == __file__, "structlog's own frames are skipped"
    assert failed["level"] == "error"
    assert failed["metadata"]["attempt"] == 2
    assert failed["metadata"]["exception"]["type"] == "TimeoutError"
    assert failed["metadata"]["exception"]["traceback"].endswith("TimeoutError: card gateway")
