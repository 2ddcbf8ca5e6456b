"""The named runs: ``smoke`` for CI, ``outage``, ``fleet`` and ``soak`` for people."""

from __future__ import annotations

from stress.faults import parse_faults
from stress.harness import RunConfig


def presets() -> dict[str, RunConfig]:
    """Fresh preset configs (callers may change them)."""
    return {
        # Under 60 s with start-up and drain: every fault kind once, the accounting must balance.
        "smoke": RunConfig(
            name="smoke", processes=2, threads=2, rate=2_000, duration=12.0,
            faults=parse_faults(["outage:2s-4s,503:5s-6s,reset:6.5s-7.5s,hang:8s-9s,"
                                 "429:9.5s-10s:0.5s,slow:10.5s-11.5s:0.2s"]),
            options={"retry_backoff": 0.1, "retry_backoff_max": 1.0, "timeout": 2.0},
            drain_timeout=30.0),
        # A ten-second outage and a hang at 10,000 entries/s with default client settings:
        # the backlog absorbs the outage, retries drain it.
        "outage": RunConfig(
            name="outage", processes=2, threads=2, rate=10_000, duration=40.0,
            faults=parse_faults(["outage:5s-15s,hang:20s-25s,503:28s-30s,429:32s-33s:1s"]),
            options={"timeout": 3.0}, drain_timeout=60.0),
        # A Gunicorn-sized fleet: 8 workers x 4 threads sharing one shipper.
        "fleet": RunConfig(
            name="fleet", processes=8, threads=4, rate=16_000, duration=30.0,
            faults=parse_faults(["slow:10s-15s:0.3s"]), drain_timeout=60.0),
        # Ten minutes with an outage every two minutes: memory and CPU must stay flat.
        "soak": RunConfig(
            name="soak", processes=4, threads=2, rate=8_000, duration=600.0,
            faults=parse_faults([f"outage:{s}s-{s + 15}s" for s in range(60, 600, 120)]),
            options={"timeout": 5.0}, drain_timeout=120.0, interval=2.0),
    }
