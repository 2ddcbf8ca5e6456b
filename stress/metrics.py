"""Latency histograms and percentiles that merge across threads and processes.

Storing every call's latency costs memory without bound on a soak run, so each thread
counts calls into log-linear buckets (64 per power of two, under 1.6% relative error)
and the buckets of threads, processes and time slices are simply added up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

SUB_BITS = 6
_SUB = 1 << SUB_BITS  # 64 buckets per power of two


def bucket(ns: int) -> int:
    """The bucket index of a latency in nanoseconds (exact below 128 ns)."""
    if ns < 2 * _SUB:
        return max(ns, 0)
    shift = ns.bit_length() - SUB_BITS - 1
    return shift * _SUB + (ns >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest latency (ns) that fall into bucket ``index``."""
    if index < 2 * _SUB:
        return index, index
    shift = index // _SUB - 1
    mantissa = index - shift * _SUB
    return mantissa << shift, ((mantissa + 1) << shift) - 1


def bucket_value(index: int) -> float:
    """A representative latency for a bucket: the middle of its range."""
    low, high = bucket_bounds(index)
    return (low + high) / 2


class Histogram:
    """Counts per bucket, plus the exact count, sum and maximum."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.max = 0

    def add(self, ns: int) -> None:
        index = bucket(ns)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += ns
        if ns > self.max:
            self.max = ns

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) in ns; the exact max for q=100, NaN when empty."""
        return histogram_percentile(self.counts, q, self.max)

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "total": self.total,
            "max": self.max,
            "counts": {str(k): v for k, v in self.counts.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Histogram:
        hist = cls()
        counts = data.get("counts", {})
        assert isinstance(counts, Mapping)
        hist.counts = {int(k): int(v) for k, v in counts.items()}
        hist.count = int(data.get("count", 0))  # type: ignore[call-overload]
        hist.total = int(data.get("total", 0))  # type: ignore[call-overload]
        hist.max = int(data.get("max", 0))  # type: ignore[call-overload]
        return hist


def _rank(n: int, q: float) -> int:
    """1-based rank of the q-th percentile among n values (nearest-rank method)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    return min(n, max(1, math.ceil(q / 100 * n)))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN for none."""
    if not values:
        return math.nan
    return values[_rank(len(values), q) - 1]


def histogram_percentile(
    counts: Mapping[int, int], q: float, exact_max: int | None = None
) -> float:
    """Nearest-rank percentile over bucket counts; the top bucket reports ``exact_max``."""
    n = sum(counts.values())
    if n == 0:
        return math.nan
    rank = _rank(n, q)
    seen = 0
    ordered = sorted(counts)
    for index in ordered:
        seen += counts[index]
        if seen >= rank:
            if index == ordered[-1] and exact_max is not None:
                return float(exact_max)
            return min(bucket_value(index), float(exact_max)) if exact_max else bucket_value(index)
    return float(exact_max) if exact_max is not None else bucket_value(ordered[-1])


def summarize(values: Iterable[int]) -> dict[str, float]:
    """mean/p50/p99/p99.9/max of raw values (ns), for benchmarks that keep them all."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "mean": math.nan, "p50": math.nan, "p99": math.nan,
                "p99.9": math.nan, "max": math.nan}
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "p99.9": percentile(ordered, 99.9),
        "max": ordered[-1],
    }


def median(values: Sequence[float]) -> float:
    """The median, NaN for none (benchmarks report medians of repeated runs)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
