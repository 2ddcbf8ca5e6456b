"""Logwell: ship application logs to a Logwell server from a separate process."""

from __future__ import annotations

__version__ = "0.1.0"

from logwell.client import Logwell
from logwell.config import API_KEY_REGEX, DEFAULT_CONFIG, validate_api_key_format, validate_config
from logwell.errors import LogwellError, LogwellErrorCode
from logwell.handler import LogwellHandler
from logwell.source_location import SourceLocation, capture_source_location
from logwell.types import IngestResponse, LogEntry, LogLevel, LogwellConfig, Stats

__all__ = [
    "API_KEY_REGEX",
    "DEFAULT_CONFIG",
    "IngestResponse",
    "LogEntry",
    "LogLevel",
    "Logwell",
    "LogwellConfig",
    "LogwellError",
    "LogwellErrorCode",
    "LogwellHandler",
    "SourceLocation",
    "Stats",
    "__version__",
    "capture_source_location",
    "validate_api_key_format",
    "validate_config",
]
