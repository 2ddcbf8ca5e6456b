"""The one HTTP client of a shipper: a urllib3 pool and the ingest protocol.

urllib3's own retries are off: the shipper owns the only retry loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

import orjson
import urllib3

from logwell import __version__

_INDEX: Final = re.compile(r"index (\d+)")


@dataclass(frozen=True)
class Answer:
    """One request's outcome: an HTTP status, or None and the connection error."""

    status: int | None
    body: bytes = b""
    retry_after: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Accepted:
    """What a 200 said about the entries of the batch."""

    accepted: int
    rejected: frozenset[int] = field(default_factory=frozenset)
    errors: tuple[str, ...] = ()


class Transport:
    """POSTs bodies to ``{endpoint}/v1/ingest`` over one keep-alive connection."""

    def __init__(
        self, endpoint: str, api_key: str, timeout: float, ca_certs: str | None = None
    ) -> None:
        self.url = f"{endpoint}/v1/ingest"
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api_key}",
            "User-Agent": f"logwell-python/{__version__}",
        }
        self._connect_timeout = min(timeout, 10.0)
        self._read_timeout = timeout
        self._timeout = urllib3.Timeout(connect=self._connect_timeout, read=timeout)
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=1,
            retries=False,
            timeout=self._timeout,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
        )

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r})"

    def post(self, body: bytes, timeout: float | None = None) -> Answer:
        """POST one body; ``timeout`` shortens the configured one (a drain near its deadline)."""
        limit = self._timeout
        if timeout is not None:
            limit = urllib3.Timeout(
                connect=min(self._connect_timeout, timeout), read=min(self._read_timeout, timeout)
            )
        try:
            response = self._pool.request(
                "POST", self.url, body=body, headers=self._headers, redirect=False,
                timeout=limit,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        return Answer(response.status, response.data or b"", response.headers.get("Retry-After"))

    def close(self) -> None:
        self._pool.clear()


def parse_accepted(body: bytes, count: int) -> Accepted:
    """Read a 200 answer; rejected entries are named by index in ``errors``.

    When the server says some were rejected but not which, the last ones are
    counted as rejected so that the totals still add up.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Accepted(count)
    if not isinstance(answer, dict):
        return Accepted(count)
    errors = answer.get("errors")
    messages = tuple(str(e) for e in errors) if isinstance(errors, list) else ()
    rejected_count = answer.get("rejected")
    if not isinstance(rejected_count, int) or rejected_count <= 0:
        return Accepted(count, errors=messages)
    rejected_count = min(rejected_count, count)
    indices = set()
    for message in messages:
        match = _INDEX.search(message)
        if match and int(match.group(1)) < count:
            indices.add(int(match.group(1)))
    for index in range(count - 1, -1, -1):
        if len(indices) >= rejected_count:
            break
        indices.add(index)
    return Accepted(count - len(indices), frozenset(indices), messages)
