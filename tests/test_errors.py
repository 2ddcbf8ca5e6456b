"""LogwellError: what it prints, what it carries, and that it pickles."""

from __future__ import annotations

import pickle

from logwell import LogwellError, LogwellErrorCode


def test_str_has_code_message_and_status() -> None:
    """str() reads like a log line: code, message, HTTP status."""
    error = LogwellError("too fast", LogwellErrorCode.RATE_LIMITED, 429, retryable=True)
    assert str(error) == "[RATE_LIMITED] too fast (HTTP 429)"
    assert str(LogwellError("bad", LogwellErrorCode.INVALID_CONFIG)) == "[INVALID_CONFIG] bad"


def test_fields_and_repr() -> None:
    """The fields are attributes and repr shows each of them."""
    error = LogwellError("x", LogwellErrorCode.SERVER_ERROR, 500, True)
    assert (error.message, error.code, error.status_code, error.retryable) == (
        "x", LogwellErrorCode.SERVER_ERROR, 500, True)
    assert "status_code=500" in repr(error) and "retryable=True" in repr(error)


def test_pickles_with_all_fields() -> None:
    """An error crosses process boundaries (pickle) unchanged."""
    error = pickle.loads(pickle.dumps(LogwellError("x", LogwellErrorCode.UNAUTHORIZED, 401)))
    assert (error.code, error.status_code, error.retryable) == (
        LogwellErrorCode.UNAUTHORIZED, 401, False)


def test_codes_are_strings_like_the_official_sdk() -> None:
    """Codes compare equal to their names, as in the official SDK."""
    assert LogwellErrorCode.QUEUE_OVERFLOW == "QUEUE_OVERFLOW"
    assert {c.value for c in LogwellErrorCode} == {
        "NETWORK_ERROR", "UNAUTHORIZED", "VALIDATION_ERROR", "RATE_LIMITED", "SERVER_ERROR",
        "QUEUE_OVERFLOW", "INVALID_CONFIG"}
