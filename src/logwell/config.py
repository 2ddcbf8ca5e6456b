"""Configuration: defaults, validation and the API key format.

Validation happens once, at construction, so that a log call never has to
doubt its settings. Every message says what is wrong and how to fix it, and
none repeats the API key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from typing import Any, Final
from urllib.parse import urlsplit

from logwell.errors import LogwellError, LogwellErrorCode
from logwell.types import LogwellConfig

#: The server's hard limit for one request body (the ingest contract).
SERVER_MAX_BODY_BYTES: Final = 524_288
#: The server's hard limit for entries in one request.
SERVER_MAX_BATCH: Final = 100

DEFAULT_CONFIG: Final[dict[str, Any]] = {
    "batch_size": 50,
    "flush_interval": 5.0,
    # The backlog lives in the shipper process, not in the application, so it
    # can hold tens of seconds of logs at thousands of entries per second.
    "max_queue_size": 100_000,
    # Retries are spaced by capped exponential backoff; ten of them cover a
    # server restart of about a minute instead of a second.
    "max_retries": 10,
    "timeout": 30.0,
    "capture_source_location": False,
    "shutdown_timeout": 5.0,
    "max_entry_bytes": 65_536,
    "max_batch_bytes": SERVER_MAX_BODY_BYTES,
    "max_queue_bytes": 64 * 1024 * 1024,
    "retry_backoff": 0.5,
    "retry_backoff_max": 10.0,
    "max_retry_after": 60.0,
}

API_KEY_REGEX: Final[re.Pattern[str]] = re.compile(r"^lw_[A-Za-z0-9_-]{32}$")

_NUMBER_BOUNDS: Final[dict[str, tuple[type, float, float, str]]] = {
    # name: (type, lowest, highest, what it controls)
    "batch_size": (int, 1, SERVER_MAX_BATCH, "entries per request (the server takes 100 at most)"),
    "flush_interval": (float, 0.001, 60.0, "seconds an entry may wait before its batch is sent"),
    "max_queue_size": (int, 1, 10_000_000, "entries the shipper holds while the server is away"),
    "max_retries": (int, 0, 1_000, "retries of one batch after transient failures"),
    "timeout": (float, 0.001, 600.0, "seconds one HTTP request may take"),
    "shutdown_timeout": (float, 0.0, 600.0, "seconds shutdown and exit may spend draining"),
    "max_entry_bytes": (int, 1_024, SERVER_MAX_BODY_BYTES - 2, "bytes of one encoded entry"),
    "max_batch_bytes": (int, 4_096, SERVER_MAX_BODY_BYTES, "bytes of one request body"),
    "max_queue_bytes": (int, 1 << 20, 1 << 34, "bytes the shipper holds while the server is away"),
    "retry_backoff": (float, 0.0, 60.0, "seconds before the first retry"),
    "retry_backoff_max": (float, 0.0, 3_600.0, "the longest wait between retries"),
    "max_retry_after": (float, 0.0, 3_600.0, "the longest Retry-After the shipper obeys"),
}
_CALLBACKS: Final = ("on_error", "on_flush")
_STRINGS: Final = ("service", "ca_certs")
_KNOWN: Final = frozenset(
    {"api_key", "endpoint", "capture_source_location", *_NUMBER_BOUNDS, *_CALLBACKS, *_STRINGS}
)
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def validate_api_key_format(api_key: str) -> bool:
    """Tell whether ``api_key`` has the shape ``lw_`` + 32 URL-safe characters."""
    return isinstance(api_key, str) and API_KEY_REGEX.match(api_key) is not None


def _invalid(message: str) -> LogwellError:
    return LogwellError(message, LogwellErrorCode.INVALID_CONFIG)


def _describe_key(api_key: object) -> str:
    """Describe a wrong key without repeating it: its type, prefix and length."""
    if not isinstance(api_key, str):
        return f"a {type(api_key).__name__}"
    prefix = "starts with 'lw_'" if api_key.startswith("lw_") else "does not start with 'lw_'"
    return f"a string that {prefix} and has {len(api_key)} characters"


def _check_endpoint(endpoint: object) -> str:
    example = "for example 'https://logs.example.com' or 'http://localhost:3000'"
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise _invalid(f"'endpoint' must be the URL of your Logwell server, {example}.")
    try:
        parts = urlsplit(endpoint.strip())
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise _invalid(f"'endpoint' {endpoint!r} is not a valid URL ({exc}); {example}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(
            f"'endpoint' {endpoint!r} needs an http:// or https:// scheme and a host; {example}."
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise _invalid(
            f"'endpoint' {endpoint!r} must not carry credentials, a query or a fragment; "
            "give only the server's base URL, the SDK appends /v1/ingest."
        )
    return endpoint.strip().rstrip("/")


def _check_number(name: str, value: object) -> int | float:
    kind, low, high, meaning = _NUMBER_BOUNDS[name]
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if kind is int and isinstance(value, float):
        wrong_type = True
    if wrong_type:
        want = "a whole number" if kind is int else "a number of seconds"
        raise _invalid(
            f"{name!r} must be {want} ({meaning}), got {type(value).__name__} {value!r}."
        )
    assert isinstance(value, (int, float))
    if math.isnan(value) or not low <= value <= high:
        shown_low = int(low) if kind is int else low
        shown_high = int(high) if kind is int else high
        raise _invalid(
            f"{name!r} is {value!r} but must be between {shown_low} and {shown_high} ({meaning})."
        )
    return value


def is_loopback_host(host: str) -> bool:
    """Tell whether a URL's host stays on this machine."""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def validate_config(config: LogwellConfig) -> LogwellConfig:
    """Check ``config`` and return a complete copy with defaults filled in.

    Raises :class:`LogwellError` with code ``INVALID_CONFIG`` on the first problem.
    """
    if not isinstance(config, dict):
        raise _invalid(
            "The configuration must be a dict, for example "
            "Logwell({'api_key': 'lw_...', 'endpoint': 'https://logs.example.com'})."
        )
    unknown = sorted(set(config) - _KNOWN, key=str)
    if unknown:
        name = str(unknown[0])
        close = difflib.get_close_matches(name, sorted(_KNOWN), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise _invalid(f"Unknown configuration option {name!r}.{hint}")
    api_key = config.get("api_key")
    if not api_key:
        raise _invalid(
            "Configuration is missing 'api_key'. Copy the key of your Logwell project "
            "(it looks like 'lw_' followed by 32 characters) into the config."
        )
    if not validate_api_key_format(api_key):
        raise _invalid(
            f"'api_key' has the wrong format: expected 'lw_' followed by 32 letters, digits, "
            f"'_' or '-', got {_describe_key(api_key)}. Copy the key again from your Logwell "
            "project settings."
        )
    if "endpoint" not in config:
        raise _invalid(
            "Configuration is missing 'endpoint', the URL of your Logwell server, "
            "for example 'https://logs.example.com'."
        )
    merged: dict[str, Any] = dict(DEFAULT_CONFIG)
    merged["api_key"] = api_key
    merged["endpoint"] = _check_endpoint(config["endpoint"])
    for name in _NUMBER_BOUNDS:
        if name in config:
            merged[name] = _check_number(name, config[name])  # type: ignore[literal-required]
    for name in ("flush_interval", "timeout", "shutdown_timeout", "retry_backoff",
                 "retry_backoff_max", "max_retry_after"):
        merged[name] = float(merged[name])
    if merged["max_entry_bytes"] > merged["max_batch_bytes"] - 2:
        raise _invalid(
            f"'max_entry_bytes' ({merged['max_entry_bytes']}) must leave room for the brackets "
            f"of a request body within 'max_batch_bytes' ({merged['max_batch_bytes']}); "
            "lower 'max_entry_bytes' or raise 'max_batch_bytes'."
        )
    capture = config.get("capture_source_location", False)
    if not isinstance(capture, bool):
        raise _invalid(
            f"'capture_source_location' must be True or False, got {type(capture).__name__}."
        )
    merged["capture_source_location"] = capture
    for name in _STRINGS:
        if name in config:
            value = config[name]  # type: ignore[literal-required]
            if not isinstance(value, str) or not value:
                raise _invalid(
                    f"{name!r} must be a non-empty string, got {type(value).__name__} {value!r}."
                )
            merged[name] = value
    ca_certs = merged.get("ca_certs")
    if ca_certs is not None and not os.path.isfile(ca_certs):
        raise _invalid(
            f"'ca_certs' must be the path of a PEM file of CA certificates; {ca_certs!r} "
            "is not a file."
        )
    for name in _CALLBACKS:
        if name in config:
            callback = config[name]  # type: ignore[literal-required]
            if not callable(callback):
                raise _invalid(
                    f"{name!r} must be callable, got {type(callback).__name__}; pass a function."
                )
            merged[name] = callback
    return merged  # type: ignore[return-value]
