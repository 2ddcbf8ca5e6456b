"""Typed shapes of what users pass in and what the server answers.

TypedDicts cost nothing at run time, so a log call pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

LogLevel = Literal["debug", "info", "warn", "error", "fatal"]


class _LogEntryRequired(TypedDict):
    level: LogLevel
    message: str


class LogEntry(_LogEntryRequired, total=False):
    """One log entry; ``level`` and ``message`` are required."""

    timestamp: str
    service: str
    metadata: dict[str, Any]
    sourceFile: str
    lineNumber: int


class _LogwellConfigRequired(TypedDict):
    api_key: str
    endpoint: str


class LogwellConfig(_LogwellConfigRequired, total=False):
    """Configuration of a client; see ``logwell.config.DEFAULT_CONFIG`` for defaults."""

    service: str
    batch_size: int
    flush_interval: float
    max_queue_size: int
    max_retries: int
    timeout: float
    capture_source_location: bool
    on_error: Callable[[Exception], None]
    on_flush: Callable[[int], None]
    # Options of this SDK that the official one does not have.
    shutdown_timeout: float
    max_entry_bytes: int
    max_batch_bytes: int
    max_queue_bytes: int
    retry_backoff: float
    retry_backoff_max: float
    max_retry_after: float
    ca_certs: str


class _IngestResponseRequired(TypedDict):
    accepted: int


class IngestResponse(_IngestResponseRequired, total=False):
    """The body of a ``200`` answer from ``POST /v1/ingest``."""

    rejected: int
    errors: list[str]


class Stats(TypedDict):
    """What became of this process's entries; see ``Logwell.stats()``.

    At any quiet moment ``logged == delivered + rejected + failed + sum(dropped.values())
    + backlog``; while entries are moving, ``backlog`` counts those still held
    by the channel or the shipper.
    """

    logged: int
    delivered: int
    rejected: int
    failed: int
    dropped: dict[str, int]
    backlog: int
    altered: int
    truncated: int
    shipper: dict[str, int]
