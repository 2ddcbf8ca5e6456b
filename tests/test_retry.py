"""Retry arithmetic: verdicts per status, Retry-After parsing, capped jittered backoff."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logwell._retry import Backoff, Verdict, classify, parse_retry_after


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED), (202, Verdict.DELIVERED), (None, Verdict.RETRY),
        (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY),
        (503, Verdict.RETRY), (504, Verdict.RETRY), (413, Verdict.SPLIT),
        (401, Verdict.UNAUTHORIZED), (400, Verdict.FINAL), (403, Verdict.FINAL),
        (404, Verdict.FINAL), (415, Verdict.FINAL), (301, Verdict.FINAL),
    ],
)
def test_each_status_has_one_verdict(status: int | None, verdict: Verdict) -> None:
    """Transient answers retry, 413 splits, 401 pauses, other 4xx are final."""
    assert classify(status) is verdict


def test_retry_after_in_seconds_and_as_a_date() -> None:
    """Retry-After is read as delta-seconds or as an HTTP date."""
    now = 1_800_000_000.0
    assert parse_retry_after("60", now) == 60.0
    assert parse_retry_after(" 5 ", now) == 5.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-3", now) is None
    assert parse_retry_after(None, now) is None


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    base=st.floats(min_value=0.0, max_value=60.0),
    cap=st.floats(min_value=0.0, max_value=3_600.0),
)
def test_backoff_is_capped_and_jittered(
    attempt: int, jitter: float, base: float, cap: float
) -> None:
    """The wait lies in the upper half of min(cap, base * 2**attempt), never above the cap."""
    step = min(cap, base * 2.0 ** min(attempt, 62))
    delay = Backoff(base, cap).delay(attempt, jitter)
    assert step / 2 - 1e-9 <= delay <= step + 1e-9
    assert delay <= cap + 1e-9


@given(attempt=st.integers(min_value=0, max_value=30))
def test_backoff_grows_until_the_cap(attempt: int) -> None:
    """With the same jitter, a later attempt never waits less."""
    backoff = Backoff(0.5, 10.0)
    assert backoff.delay(attempt + 1, 0.3) >= backoff.delay(attempt, 0.3)


@given(
    retry_after=st.floats(min_value=-10, max_value=1e9, allow_nan=False),
    limit=st.floats(min_value=0.0, max_value=3_600.0),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_retry_after_wins_up_to_its_cap(retry_after: float, limit: float, jitter: float) -> None:
    """A server's Retry-After is obeyed, but never beyond max_retry_after."""
    delay = Backoff(0.5, 10.0, limit).delay(3, jitter, retry_after)
    assert delay == min(max(retry_after, 0.0), limit)
