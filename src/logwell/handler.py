"""``LogwellHandler``: the standard ``logging`` module as a Logwell destination.

Records go through the same process-isolated pipeline as the client's own log
calls: the handler turns a ``LogRecord`` into an entry dict on the calling
thread and hands it to the pipeline, which encodes it and writes it to the
shipper's pipe. The network is never on this path, and nothing here raises
into ``logging``.

>>> import logging
>>> handler = LogwellHandler(api_key="lw_" + "x" * 32,
...                          endpoint="https://logs.example.com")  # doctest: +SKIP
>>> logging.getLogger().addHandler(handler)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import traceback
from itertools import islice
from typing import Any, Final

from logwell._encoding import timestamp_at
from logwell.client import Logwell
from logwell.errors import LogwellError, LogwellErrorCode

__all__ = ["LogwellHandler"]

_SERVER_LEVELS: Final = (
    (logging.DEBUG, "debug"),
    (logging.INFO, "info"),
    (logging.WARNING, "warn"),
    (logging.ERROR, "error"),
    (logging.CRITICAL, "fatal"),
)
#: Levels seen so far; custom levels are added on first use.
_LEVELS: dict[int, str] = dict(_SERVER_LEVELS)
_MAX_CACHED_LEVELS: Final = 1_024

#: Attributes every LogRecord has, and those formatters add; anything else is ``extra``.
_PLAIN_RECORD: Final = logging.LogRecord("", logging.INFO, "", 1, "", (), None).__dict__
_RECORD_SIZE: Final = len(_PLAIN_RECORD)
_STANDARD: Final = frozenset(_PLAIN_RECORD) | {"message", "asctime", "taskName"}

#: The SDK's own loggers; their records are never shipped (no feedback loop).
_OWN_LOGGER: Final = "logwell"
_OWN_PREFIX: Final = "logwell."



def level_name(levelno: object) -> str:
    """The server's level for a ``logging`` level number; custom levels map to the nearest.

    A level exactly between two standard ones takes the lower (a ``SUCCESS``
    at 35 is a warning, not an error); below DEBUG is debug, above CRITICAL fatal,
    and a level that is not a number (a hand-made record) info.
    """
    if not isinstance(levelno, int) or isinstance(levelno, bool):
        return "info"  # a hand-made record without a level
    name = _LEVELS.get(levelno)
    if name is not None:
        return name
    best = min(_SERVER_LEVELS, key=lambda pair: (abs(pair[0] - levelno), pair[0]))[1]
    if len(_LEVELS) < _MAX_CACHED_LEVELS:
        _LEVELS[levelno] = best
    return best


def _type_name(kind: type[BaseException]) -> str:
    module = getattr(kind, "__module__", None)
    qualname = getattr(kind, "__qualname__", kind.__name__)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _add_exception(record: logging.LogRecord, metadata: dict[str, Any]) -> None:
    """Add the record's exception (type, message, traceback with its chain) and stack."""
    exc_info = record.exc_info
    if exc_info and isinstance(exc_info, tuple) and exc_info[0] is not None:
        kind, value, tb = exc_info
        try:
            text = "".join(traceback.format_exception(kind, value, tb)).rstrip("\n")
        except Exception:  # a broken exception object; keep what can be said about it
            text = record.exc_text or ""
        metadata["exception"] = {
            "type": _type_name(kind), "message": _safe_str(value), "traceback": text,
        }
    if record.stack_info:
        metadata["stack"] = record.stack_info


def _add_extras(attributes: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Copy the record's non-standard attributes (``extra=``, filters, record factories)."""
    # LogRecord.__init__ sets the standard attributes first, so extras come after
    # them; look at the whole record only when one is missing there.
    expected = len(attributes) - _RECORD_SIZE - ("message" in attributes) - (
        "asctime" in attributes
    )
    found = 0
    for key in islice(attributes, _RECORD_SIZE, None):
        if key not in _STANDARD:
            metadata[key] = attributes[key]
            found += 1
    if found < expected:
        for key, value in attributes.items():
            if key not in _STANDARD:
                metadata[key] = value


def _drop_none(metadata: dict[str, Any]) -> None:
    for key in ("process", "thread"):
        if metadata.get(key) is None:
            metadata.pop(key, None)


class LogwellHandler(logging.Handler):
    """A ``logging.Handler`` that ships records to Logwell.

    Either build it from the client's options, as ``logging.config.dictConfig``
    does::

        LogwellHandler(api_key="lw_...", endpoint="https://logs.example.com",
                       service="api", level="INFO")

    or wrap a client you already have (``LogwellHandler(client=client)``). A
    handler that built its client shuts it down in ``close()``; a wrapped client
    is only flushed, since it belongs to the caller.

    Each record becomes one entry: the level mapped to the server's five (custom
    levels to the nearest), ``record.getMessage()`` as the message (or the
    formatter's output when one is set), ``record.created`` as the timestamp,
    ``record.pathname``/``record.lineno`` as ``sourceFile``/``lineNumber``, and
    as metadata the record's ``extra`` fields plus ``logger``, ``process`` and
    ``thread`` (the thread's name); with ``exc_info``, an ``exception`` object
    (``type``, ``message``, ``traceback``), and with ``stack_info``, ``stack``.

    Records from the SDK's own loggers (``logwell`` and ``logwell.*``) are
    ignored, so the handler can sit on the root logger at DEBUG.
    """

    def __init__(
        self,
        level: int | str = logging.NOTSET,
        *,
        client: Logwell | None = None,
        **options: Any,
    ) -> None:
        self._closed_by_us = True  # until the client exists: close() has nothing to drain
        super().__init__(level)
        if client is not None and options:
            raise LogwellError(
                "LogwellHandler takes either client= or the client's options "
                f"(got client= and {', '.join(sorted(options))}); pass one of them.",
                LogwellErrorCode.INVALID_CONFIG,
            )
        if client is None:
            # dictConfig hands nested dicts over as its own dict subclass; validate a plain one.
            client = Logwell(dict(options))  # type: ignore[arg-type]
            self._owns_client = True
        else:
            if not isinstance(client, Logwell):
                raise LogwellError(
                    f"client= must be a logwell.Logwell, got {type(client).__name__}.",
                    LogwellErrorCode.INVALID_CONFIG,
                )
            self._owns_client = False
        self._client = client
        # The client's own hot path, taken apart: the handler already has the
        # timestamp, level and source location, so it fills the entry itself and
        # hands it straight to the shared pipeline (see Logwell.log for the rules).
        self._pipeline = client._pipeline
        self._submit = client._pipeline.submit
        self._service: str | None = client._service
        self._context: dict[str, Any] | None = client._context
        self._drain_timeout: float = client._pipeline.shutdown_timeout
        self._closed_by_us = False

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self._client!r} ({level})>"

    @property
    def client(self) -> Logwell:
        """The client this handler ships through (for ``stats()``, ``child()`` and the like)."""
        return self._client

    # -- the hot path -----------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit ``record``; the SDK's own records are dropped here.

        Unlike ``logging.Handler.handle`` this takes no handler lock: the pipeline
        is thread- and fork-safe without one, and log calls from many threads
        should not queue behind each other.
        """
        name = record.name
        try:
            if name.startswith(_OWN_LOGGER) and (
                name == _OWN_LOGGER or name.startswith(_OWN_PREFIX)
            ):
                return False
        except AttributeError:  # a hand-made record whose name is not a string
            pass
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may replace it
                record = result
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Turn ``record`` into an entry and hand it to the shipper; never blocks, never raises."""
        # Kept flat, like the client's own log calls: this runs for every record.
        if self._client._stopped:
            self._pipeline.drop("after_shutdown")
            return
        try:
            formatter = self.formatter
            try:
                message = record.getMessage() if formatter is None else formatter.format(record)
                problem = None
            except Exception as exc:  # arguments that do not fit the format: ship it anyway
                message = _safe_str(record.msg)
                problem = exc
            name = record.name
            process = record.process
            thread = record.threadName
            metadata: dict[str, Any] = {"logger": name, "process": process, "thread": thread}
            if self._context:
                metadata = {**self._context, **metadata}
            attributes = record.__dict__
            size = len(attributes)
            if size > _RECORD_SIZE and (
                size - _RECORD_SIZE - ("message" in attributes) - ("asctime" in attributes)
            ) > 0:
                _add_extras(attributes, metadata)
                metadata["logger"] = name
            if process is None or thread is None:  # logging.logProcesses/logThreads is off
                _drop_none(metadata)
            if record.exc_info or record.stack_info:
                _add_exception(record, metadata)
            if problem is not None:
                metadata["logwell_format_error"] = f"{type(problem).__name__}: {_safe_str(problem)}"
                if record.args:
                    metadata["logwell_args"] = _safe_str(record.args)
            levelno = record.levelno
            entry: dict[str, Any] = {
                "level": _LEVELS.get(levelno) or level_name(levelno),
                "message": message,
                "timestamp": timestamp_at(int(record.created * 1000)),
                "metadata": metadata,
            }
            if self._service is not None:
                entry["service"] = self._service
            lineno = record.lineno
            if type(lineno) is int and 0 < lineno < 2**31:  # 0: the caller is unknown
                entry["sourceFile"] = record.pathname
                entry["lineNumber"] = lineno
            plain = type(message) is str and bool(message) and not message.isspace()
        except Exception:
            self.handleError(record)
            return
        self._submit(entry, plain)

    # -- logging's life cycle ---------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until the records emitted so far are delivered or have failed.

        Waits at most ``timeout`` seconds (default: the client's
        ``shutdown_timeout``); returns False when that ran out. Never raises.
        """
        if self._closed_by_us:
            return True
        try:
            return self._client.flush(self._drain_timeout if timeout is None else timeout)
        except Exception:
            return False

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``timeout`` (default: ``shutdown_timeout``) and let go of the client.

        A client the handler built is shut down; one passed in with ``client=``
        is only flushed. Safe to call twice; ``logging.shutdown()`` calls it.
        """
        try:
            if not self._closed_by_us:
                self._closed_by_us = True
                bound = self._drain_timeout if timeout is None else timeout
                if self._owns_client:
                    self._client.shutdown(bound)
                else:
                    self._client.flush(bound)
        except Exception:
            pass
        finally:
            super().close()
