"""Tests of the stress harness: its pure parts, and one short run through the real shipper."""

from __future__ import annotations

import io
import math
import os
import random
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # stress/ is a top-level folder, not part of the installed package
    sys.path.insert(0, ROOT)

from stress import report  # noqa: E402
from stress.accounting import Accounting, check, exit_code, server_view  # noqa: E402
from stress.faults import Fault, FaultError, Schedule, parse_duration, parse_faults  # noqa: E402
from stress.harness import RunConfig, run  # noqa: E402
from stress.metrics import (  # noqa: E402
    Histogram,
    bucket,
    bucket_bounds,
    histogram_percentile,
    median,
    percentile,
)
from stress.server import IdCounter, StressServer  # noqa: E402

# -- fault schedules -----------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_durations_in_every_unit() -> None:
    assert parse_duration("2s") == 2.0
    assert parse_duration("1.5") == 1.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120.0
    with pytest.raises(FaultError):
        parse_duration("soon")


@pytest.mark.timeout(10)
def test_fault_schedule_parses_kinds_arguments_and_defaults() -> None:
    faults = parse_faults(["outage:2s-6s,slow:7s-8s:0.5s", "429:9s-10s", "503:500ms-1s"])
    assert faults == [
        Fault("503", 0.5, 1.0),
        Fault("outage", 2.0, 6.0),
        Fault("slow", 7.0, 8.0, 0.5),
        Fault("429", 9.0, 10.0, 1.0),  # Retry-After defaults to one second
    ]
    assert str(faults[2]) == "slow:7s-8s:0.5"
    assert parse_faults([""]) == []


@pytest.mark.timeout(10)
@pytest.mark.parametrize("spec", [
    "outage", "outage:6s-2s", "flood:1s-2s", "outage:1s-2s:3s", "slow:1s-x",
    "503:1s-3s,reset:2s-4s",  # two storms at once
])
def test_bad_fault_schedules_are_refused(spec: str) -> None:
    with pytest.raises(FaultError):
        parse_faults([spec])


@pytest.mark.timeout(10)
def test_faults_of_different_families_may_overlap() -> None:
    assert len(parse_faults(["outage:1s-5s,slow:2s-3s"])) == 2


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def fault(self, fault: Fault, active: bool) -> None:
        self.calls.append((fault.kind, active))


@pytest.mark.timeout(10)
def test_schedule_switches_faults_on_and_off_in_order() -> None:
    recorder = _Recorder()
    schedule = Schedule(parse_faults(["outage:1s-2s,hang:2s-3s,503:5s-6s"]), recorder)
    schedule.tick(0.5)
    assert recorder.calls == []
    schedule.tick(2.0)  # outage ends before hang begins at the same instant
    assert recorder.calls == [("outage", True), ("outage", False), ("hang", True)]
    assert [f.kind for f in schedule.active(2.5)] == ["hang"]
    schedule.finish()  # the run ended early: what is on goes off, what never began stays off
    assert recorder.calls[-1] == ("hang", False)
    assert ("503", True) not in recorder.calls and ("503", False) not in recorder.calls


# -- percentiles -------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert math.isnan(percentile([], 50))
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        percentile(values, 101)


@pytest.mark.timeout(10)
def test_buckets_are_contiguous_and_tight() -> None:
    previous_high = -1
    for index in range(bucket(10**10) + 1):
        low, high = bucket_bounds(index)
        if index >= 128:
            assert low == previous_high + 1
            assert (high - low) / low < 1 / 63
        previous_high = high
    for ns in (0, 1, 127, 128, 129, 1_000, 2_345, 10**6, 123_456_789):
        low, high = bucket_bounds(bucket(ns))
        assert low <= ns <= high


@pytest.mark.timeout(10)
def test_histogram_percentiles_match_exact_ones_within_bucket_error() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.2)) for _ in range(20_000)]
    merged, parts = Histogram(), [Histogram(), Histogram()]
    for i, v in enumerate(values):
        parts[i % 2].add(v)
    for part in parts:
        merged.merge(part)
    ordered = sorted(values)
    for q in (50, 99, 99.9):
        exact = percentile(ordered, q)
        assert abs(merged.percentile(q) - exact) <= exact * 0.02
    assert merged.percentile(100) == max(values) == merged.max
    assert merged.count == len(values) and merged.mean == pytest.approx(sum(values) / len(values))
    assert Histogram.from_json(merged.to_json()).counts == merged.counts
    assert math.isnan(histogram_percentile({}, 50))


# -- accounting --------------------------------------------------------------------------


def _stats(logged: int, delivered: int, *, failed: int = 0, backlog: int = 0,
           **dropped: int) -> dict[str, object]:
    reasons = {"queue_full": 0, "backlog_full": 0, **dropped}
    return {"logged": logged, "delivered": delivered, "rejected": 0, "failed": failed,
            "dropped": reasons, "backlog": backlog, "altered": 0, "truncated": 0}


@pytest.mark.timeout(10)
def test_balanced_accounting_passes() -> None:
    acc = Accounting.from_stats([_stats(100, 90, failed=4, queue_full=6), _stats(50, 50)])
    assert (acc.logged, acc.delivered, acc.dropped_total, acc.unaccounted) == (150, 140, 6, 0)
    server = server_view(acc, {"received": 140, "distinct": 140, "duplicates": 0})
    problems = check(acc, server, {"parent": 0.1}, shutdown_timeout=5.0)
    assert problems == [] and exit_code(problems) == 0


@pytest.mark.timeout(10)
def test_an_entry_in_no_counter_fails_the_run() -> None:
    acc = Accounting.from_stats([_stats(100, 98, queue_full=1)])
    assert acc.unaccounted == 1
    problems = check(acc, server_view(acc, None), {}, shutdown_timeout=5.0)
    assert exit_code(problems) == 1
    assert "does not balance" in problems[0].text


@pytest.mark.timeout(10)
def test_backlog_left_at_the_end_fails_the_run() -> None:
    acc = Accounting.from_stats([_stats(100, 90, backlog=10)])
    assert acc.unaccounted == 0
    assert exit_code(check(acc, server_view(acc, None), {}, shutdown_timeout=5.0)) == 1


@pytest.mark.timeout(10)
def test_delivered_but_missing_at_the_server_fails_and_duplicates_are_noted() -> None:
    acc = Accounting.from_stats([_stats(100, 100)])
    missing = server_view(acc, {"received": 99, "distinct": 99, "duplicates": 0})
    assert missing["missing"] == 1
    assert exit_code(check(acc, missing, {}, 5.0)) == 1
    dupes = server_view(acc, {"received": 103, "distinct": 100, "duplicates": 3})
    problems = check(acc, dupes, {}, 5.0)
    assert exit_code(problems) == 0 and "more than once" in problems[0].text


@pytest.mark.timeout(10)
def test_a_slow_exit_fails_the_run() -> None:
    acc = Accounting.from_stats([_stats(10, 10)])
    assert exit_code(check(acc, server_view(acc, None), {"parent": 5.4}, 5.0)) == 0
    problems = check(acc, server_view(acc, None), {"parent": 6.0}, 5.0)
    assert exit_code(problems) == 1 and "to exit" in problems[0].text


@pytest.mark.timeout(10)
def test_id_counter_counts_distinct_and_duplicate_ids() -> None:
    ids = IdCounter()
    for stream, seq in ((1, 0), (1, 1), (1, 1), (2, 5000), (1, 0)):
        ids.add(stream, seq)
    summary = ids.summary()
    assert (summary["received"], summary["distinct"], summary["duplicates"]) == (5, 3, 2)
    assert summary["streams"] == {"1": 2, "2": 1}


@pytest.mark.timeout(10)
def test_stress_server_still_finds_its_hooks_in_ingest_server() -> None:
    """StressServer overrides internal methods of IngestServer; a rename must show here."""
    from logwell import testing

    for name in ("_serve", "_process"):
        assert name in vars(testing.IngestServer), name
    assert callable(testing._scripted_answer)
    assert StressServer._process is not testing.IngestServer._process


# -- end to end --------------------------------------------------------------------------


@pytest.mark.fork
@pytest.mark.timeout(120)
def test_short_run_with_faults_balances_and_exits_zero() -> None:
    """2 forked workers x 2 threads, a few seconds, an outage and a 503 storm on the way."""
    cfg = RunConfig(name="test", processes=2, threads=2, rate=400, duration=3.0,
                    faults=parse_faults(["outage:0.5s-1.2s,503:1.5s-2s"]),
                    options={"retry_backoff": 0.05, "retry_backoff_max": 0.2, "timeout": 2.0},
                    drain_timeout=30.0, interval=0.5)
    result = run(cfg, progress_stream=io.StringIO())
    acc = result["accounting"]
    assert result["exit_code"] == 0, result["problems"]
    assert acc["unaccounted"] == 0 and acc["backlog"] == 0
    assert acc["logged"] == acc["delivered"] > 1_000
    assert result["server"]["distinct"] == acc["delivered"]
    assert result["server"]["missing"] == 0
    assert result["latency_ns"]["count"] == acc["logged"]
    assert result["shipper"]["exited"] and result["shipper"]["peak_rss"] > 0
    assert [e["event"].split()[0] for e in result["faults"]] == ["begin", "end", "begin", "end"]
    text = report.render(result)
    assert "balanced" in text and "result: OK" in text
