"""Turning a log call into the bytes of one JSON entry.

The fast path is a single ``orjson.dumps``. Anything it refuses, and anything
the real server would choke on (NUL characters, a ``lineNumber`` out of range,
an entry too large), takes the slow path, which never raises: it rewrites the
offending values into something predictable and says that it did.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Final

import orjson

#: Levels the server accepts, and the spellings we map onto them.
LEVELS: Final = frozenset({"debug", "info", "warn", "error", "fatal"})
_LEVEL_ALIASES: Final = {"warning": "warn", "critical": "fatal", "err": "error"}
#: Placeholder for a message the server would reject as empty.
EMPTY_MESSAGE: Final = "(empty message)"
_MAX_DEPTH: Final = 64
_MAX_LINE: Final = 2_147_483_647
_NUL_JSON: Final = b"\\u0000"
# An escaped NUL: "\u0000" after an even run of backslashes (an odd run would
# make it the literal text \u0000).
_ESCAPED_NUL: Final = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_TRUNCATION_ROOM: Final = 96

# What the slow path did to an entry, reported to the caller for counting.
ALTERED: Final = 1
TRUNCATED: Final = 2

_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))
_second_cache: tuple[int, str] = (0, "")


def timestamp_at(epoch_millis: int) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-27T13:20:34.512Z``.

    The date and time of day are formatted once a second; the rest is a lookup.
    """
    global _second_cache
    second, millis = divmod(epoch_millis, 1000)
    cached = _second_cache
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second_cache = cached
    return cached[1] + _MILLIS[millis]


_millis_cache: tuple[int, str] = (0, "")


def utc_timestamp() -> str:
    """Now, as :func:`timestamp_at` formats it; calls within one millisecond share it."""
    global _millis_cache
    now = time.time_ns() // 1_000_000
    cached = _millis_cache
    if cached[0] != now:
        cached = (now, timestamp_at(now))
        _millis_cache = cached
    return cached[1]


def normalize_level(level: object) -> str | None:
    """Map a level to the server's spelling, or None when it has no meaning."""
    if isinstance(level, str):
        lowered = level.strip().lower()
        if lowered in LEVELS:
            return lowered
        return _LEVEL_ALIASES.get(lowered)
    return None


def encode(entry: dict[str, Any], max_bytes: int) -> tuple[bytes, int]:
    """Encode an entry; return its bytes and the ALTERED/TRUNCATED flags.

    The result may still exceed ``max_bytes`` when fields other than the
    message and metadata are that large; the caller drops such an entry.
    """
    try:
        data = orjson.dumps(entry)
    except Exception:  # anything orjson refuses: unknown types, cycles, big ints
        pass
    else:
        message = entry["message"]
        line = entry.get("lineNumber")
        metadata = entry.get("metadata")
        # NUL characters are left to the shipper (see ``replace_nul``), off this thread.
        if (
            type(message) is str
            and message
            and not message.isspace()
            and (metadata is None or type(metadata) is dict)
            and (line is None or (type(line) is int and 0 < line <= _MAX_LINE))
        ):
            if len(data) <= max_bytes:
                return data, 0
            return _truncate(dict(entry), max_bytes), TRUNCATED
    clean = _clean_entry(entry)
    data = orjson.dumps(clean)
    if len(data) <= max_bytes:
        return data, ALTERED
    return _truncate(clean, max_bytes), ALTERED | TRUNCATED


def replace_nul(data: bytes) -> bytes:
    """Replace every NUL character in encoded JSON with U+FFFD.

    The real server fails a whole batch on a NUL; U+FFFD is what it stores for
    other characters it cannot keep.
    """
    return _ESCAPED_NUL.sub(rb"\1\\ufffd", data)


def _try_dumps(value: object) -> bytes | None:
    try:
        return orjson.dumps(value)
    except Exception:  # anything orjson refuses: unknown types, cycles, big ints
        return None


def _clean_entry(entry: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "message":
            text = _clean_str(value if isinstance(value, str) else _safe_str(value))
            clean[key] = text if text and not text.isspace() else EMPTY_MESSAGE
        elif key == "lineNumber":
            if type(value) is int and 1 <= value <= _MAX_LINE:
                clean[key] = value
        elif key == "timestamp":
            if isinstance(value, str):
                clean[key] = _clean_str(value)
        elif key == "metadata":
            if isinstance(value, dict):
                cleaned = _clean_value(value, 0, set())
            else:
                cleaned = {"value": _clean_value(value, 0, set())}
            if cleaned:
                clean[key] = cleaned
        else:
            clean[key] = _clean_str(value if isinstance(value, str) else _safe_str(value))
    return clean


def _clean_str(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _clean_value(value: Any, depth: int, seen: set[int]) -> Any:
    """A JSON-safe copy of ``value``: the documented fallback for every type."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                return {
                    _clean_key(key): _clean_value(item, depth + 1, seen)
                    for key, item in value.items()
                }
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            return [_clean_value(item, depth + 1, seen) for item in items]
        finally:
            seen.discard(id(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _clean_str(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return _clean_str(f"{type(value).__name__}: {_safe_str(value)}")
    native = _try_dumps(value)  # datetime, UUID, Enum, dataclass: orjson knows them
    if native is not None and _NUL_JSON not in native:
        return orjson.loads(native)
    return _clean_str(_safe_str(value))


def _clean_key(key: object) -> str:
    return _clean_str(key if isinstance(key, str) else _safe_str(key))


def _truncate(entry: dict[str, Any], max_bytes: int) -> bytes:
    """Shrink an entry below ``max_bytes``: large metadata first, then the message."""
    data = orjson.dumps(entry)
    metadata = entry.get("metadata")
    if metadata is not None:
        size = len(orjson.dumps(metadata))
        if size > max_bytes // 2:
            entry["metadata"] = {"logwell_truncated": f"metadata of {size} bytes removed"}
            data = orjson.dumps(entry)
    original: str = entry["message"]
    keep = len(original)
    while len(data) > max_bytes and keep > 0:
        # Every character takes at least one byte, so one pass almost always fits.
        keep = max(0, keep - (len(data) - max_bytes) - _TRUNCATION_ROOM)
        entry["message"] = (
            f"{original[:keep]}… [truncated by logwell: {len(original) - keep} characters]"
        )
        data = orjson.dumps(entry)
    return data
