"""The one exception type of the SDK and its error codes.

Every error that reaches an application, raised at construction or passed to
``on_error``, is a :class:`LogwellError`; ``code`` says which kind it is and
``retryable`` whether trying again later can help.
"""

from __future__ import annotations

from enum import Enum


class LogwellErrorCode(str, Enum):
    """The kinds of failure, shared with the official SDK."""

    NETWORK_ERROR = "NETWORK_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    SERVER_ERROR = "SERVER_ERROR"
    QUEUE_OVERFLOW = "QUEUE_OVERFLOW"
    INVALID_CONFIG = "INVALID_CONFIG"


class LogwellError(Exception):
    """An SDK error: a message for people, a code for programs."""

    def __init__(
        self,
        message: str,
        code: LogwellErrorCode,
        status_code: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.retryable = retryable

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"[{self.code.value}] {self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"LogwellError(message={self.message!r}, code={self.code!r}, "
            f"status_code={self.status_code!r}, retryable={self.retryable!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable with all its fields.
        return (type(self), (self.message, self.code, self.status_code, self.retryable))
