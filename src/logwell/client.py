"""The client applications talk to: ``Logwell`` and its ``child()`` loggers.

A log call builds a plain dict, encodes it on the calling thread and writes
it to the shipper's pipe; the network is never on this path.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from logwell._encoding import normalize_level, utc_timestamp
from logwell._pipeline import INVALID, Pipeline, warn_if_plain_http
from logwell.config import validate_config
from logwell.errors import LogwellError, LogwellErrorCode
from logwell.types import LogEntry, LogwellConfig, Stats


def _in_multiprocessing_bootstrap() -> bool:
    """True while a spawn or forkserver child re-imports the application's main module.

    A client created at module level of a script without a main guard is then
    created once more in every such child; it starts its shipper only when it
    is used, so that an unused copy costs no process.
    """
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", "") == "__mp_main__":
        return True
    # While spawn._main() re-runs the main module (as "__mp_main__", through runpy),
    # sys.modules["__main__"] is still the bootstrap's and parent_process() is still
    # None: _inheriting is the one sign, set for exactly that span.
    process = sys.modules.get("multiprocessing.process")
    return process is not None and bool(getattr(process.current_process(), "_inheriting", False))


class Logwell:
    """A Logwell client. Create one per application; it is thread- and fork-safe.

    >>> client = Logwell({"api_key": "lw_" + "x" * 32, "endpoint": "https://logs.example.com"})
    >>> client.info("user signed in", {"user_id": "42"})  # doctest: +SKIP
    >>> client.shutdown()  # doctest: +SKIP
    """

    __slots__ = ("_capture", "_config", "_context", "_owner", "_pipeline", "_service", "_stopped")

    def __init__(
        self,
        config: LogwellConfig,
        *,
        _pipeline: Pipeline | None = None,
        _context: dict[str, Any] | None = None,
    ) -> None:
        if _pipeline is None:
            self._config = validate_config(config)
            self._pipeline = Pipeline(self._config)
            warn_if_plain_http(self._config["endpoint"])
            if not _in_multiprocessing_bootstrap():
                self._pipeline.start()
        else:
            self._config = config
            self._pipeline = _pipeline
        self._owner = _pipeline is None
        self._service: str | None = self._config.get("service")
        self._context = _context or None
        self._capture: bool = self._config["capture_source_location"]
        self._stopped = False

    def __repr__(self) -> str:
        return f"Logwell(endpoint={self._config['endpoint']!r}, service={self._service!r})"

    # -- logging --------------------------------------------------------------------------

    def debug(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        """Log at level ``debug``."""
        self._emit("debug", message, metadata)

    def info(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        """Log at level ``info``."""
        self._emit("info", message, metadata)

    def warn(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        """Log at level ``warn``."""
        self._emit("warn", message, metadata)

    def error(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        """Log at level ``error``."""
        self._emit("error", message, metadata)

    def fatal(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        """Log at level ``fatal``."""
        self._emit("fatal", message, metadata)

    def _emit(self, level: str, message: object, metadata: object) -> None:
        # Kept flat: this is the hot path of every log call.
        if self._stopped:
            self._pipeline.drop("after_shutdown")
            return
        entry: dict[str, Any] = {"level": level, "message": message, "timestamp": utc_timestamp()}
        if self._service is not None:
            entry["service"] = self._service
        context = self._context
        if metadata:
            entry["metadata"] = (
                {**context, **metadata} if context and type(metadata) is dict else metadata
            )
        elif context:
            entry["metadata"] = context
        if self._capture:
            frame = sys._getframe(2)
            entry["sourceFile"] = frame.f_code.co_filename
            entry["lineNumber"] = frame.f_lineno
        self._pipeline.submit(
            entry,
            type(message) is str
            and bool(message)
            and not message.isspace()
            and (not metadata or type(metadata) is dict),
        )

    def log(self, entry: LogEntry) -> None:
        """Log a complete entry; fields it leaves out are filled in as for ``info()``."""
        if self._stopped:
            self._pipeline.drop("after_shutdown")
            return
        if not isinstance(entry, Mapping) or "message" not in entry:
            self._pipeline.drop(INVALID)
            return
        level = normalize_level(entry.get("level"))
        if level is None:
            self._pipeline.drop(INVALID)
            return
        full: dict[str, Any] = {
            "level": level,
            "message": entry["message"],
            "timestamp": entry.get("timestamp") or utc_timestamp(),
        }
        service = entry.get("service") or self._service
        if service is not None:
            full["service"] = service
        metadata = entry.get("metadata")
        context = self._context
        if metadata and context and isinstance(metadata, Mapping):
            full["metadata"] = {**context, **metadata}
        elif metadata or context:
            full["metadata"] = metadata or context
        if "sourceFile" in entry or "lineNumber" in entry:
            for key in ("sourceFile", "lineNumber"):
                if key in entry:
                    full[key] = entry[key]
        elif self._capture:
            frame = sys._getframe(1)
            full["sourceFile"] = frame.f_code.co_filename
            full["lineNumber"] = frame.f_lineno
        self._pipeline.submit(full)

    def child(
        self, metadata: dict[str, Any] | None = None, *, service: str | None = None
    ) -> Logwell:
        """A logger that adds ``metadata`` to every entry and shares this client's shipper.

        The parent is not changed; a key of the entry's own metadata wins over
        the child's, and the child's over its parent's.
        """
        config: LogwellConfig = dict(self._config)  # type: ignore[assignment]
        if service is not None:
            if not isinstance(service, str) or not service:
                raise LogwellError(
                    f"child(service=...) must be a non-empty string, got {service!r}.",
                    LogwellErrorCode.INVALID_CONFIG,
                )
            config["service"] = service
        context = {**(self._context or {}), **(metadata or {})}
        return Logwell(config, _pipeline=self._pipeline, _context=context)

    # -- delivery ---------------------------------------------------------------------

    @property
    def queue_size(self) -> int:
        """Entries this process logged that are not yet delivered or finally failed."""
        return self._pipeline.pending()

    def stats(self) -> Stats:
        """Counters for this process's entries and for its shipper; see the README."""
        return self._pipeline.stats()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every entry this process logged so far is delivered or has failed.

        Returns False when ``timeout`` (default: the ``timeout`` option) ran out first.
        """
        return self._pipeline.flush(self._config["timeout"] if timeout is None else timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop; later log calls are counted as dropped. Safe to call twice.

        On a ``child()`` logger this only stops that child. Returns False when
        ``timeout`` (default: the ``shutdown_timeout`` option) ran out.
        """
        self._stopped = True
        if not self._owner:
            return self._pipeline.flush(self._timeout(timeout))
        return self._pipeline.shutdown(self._timeout(timeout))

    def _timeout(self, timeout: float | None) -> float:
        return self._config["shutdown_timeout"] if timeout is None else timeout

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush()`` for asyncio code: waits in a worker thread, not in the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    async def ashutdown(self, timeout: float | None = None) -> bool:
        """``shutdown()`` for asyncio code."""
        return await asyncio.to_thread(self.shutdown, timeout)

    def __enter__(self) -> Logwell:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> Logwell:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.ashutdown()
