"""When to try a request again, as pure functions of the answer and the attempt.

Kept apart from any sleeping so that the arithmetic can be property-tested.
"""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass
from typing import Final


class Verdict(enum.Enum):
    """What the shipper does with a batch after one answer."""

    DELIVERED = "delivered"  # 2xx: done (some entries may be rejected inside)
    RETRY = "retry"  # transient: same entries again after a delay
    SPLIT = "split"  # 413: the body was too large, send it in halves
    UNAUTHORIZED = "unauthorized"  # 401: final, and pause sending
    FINAL = "final"  # any other 4xx: final for these entries


_TRANSIENT: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify(status: int | None) -> Verdict:
    """Map an HTTP status (None for a connection error or a timeout) to a verdict."""
    if status is None or status in _TRANSIENT or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 413:
        return Verdict.SPLIT
    if status == 401:
        return Verdict.UNAUTHORIZED
    return Verdict.FINAL


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter, and a cap on what a server may ask for."""

    base: float = 0.5
    cap: float = 10.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        ``jitter`` is a random number in [0, 1): the wait is spread over the upper
        half of the exponential step so that a fleet does not retry in lockstep.
        A ``Retry-After`` from the server wins, up to ``max_retry_after``.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        step = min(self.cap, self.base * 2.0 ** min(attempt, 62))
        return step * (0.5 + jitter / 2.0)
