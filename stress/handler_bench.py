"""What LogwellHandler adds to a ``logging`` call, in microseconds per record.

Run from the repository root: ``python -m stress.handler_bench [--records N] [--runs R]``

Each scenario logs through a logger whose only handler is the one measured. The
baseline handler does nothing, so it costs exactly ``logging``'s own record
creation and dispatch; each handler scenario is reported as its difference to
the baseline that logs the same call ("over"). Records are logged in timed
bursts of 1,000; between bursts the client is flushed (untimed) so the pipe to
the shipper never fills.
The ingest server runs in a process of its own, so its threads do not compete
for this process's GIL. Each run reports the mean over all records; the table
shows the median of the runs, as wall-clock time and as the calling thread's
CPU time (user + system, which includes the pipe write). On a small machine the
shipper and the server compete with the logging thread for cores during a
burst, which the wall-clock figure includes and the CPU figure does not.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from logwell import Logwell
from logwell.handler import LogwellHandler

BURST = 1_000

SERVER = """
import sys
from logwell.testing import IngestServer
with IngestServer() as server:
    print(server.endpoint, server.api_key, flush=True)
    sys.stdin.read()
"""


class Nothing(logging.Handler):
    """Costs nothing beyond what ``logging`` does to reach a handler."""

    def handle(self, record: logging.LogRecord) -> bool:
        return True

    def emit(self, record: logging.LogRecord) -> None:
        pass


def timed_bursts(
    call: Callable[[int], None], records: int, between: Callable[[], Any]
) -> tuple[float, float]:
    """Mean microseconds per call over ``records`` calls made in bursts: wall clock, CPU."""
    wall = cpu = 0
    for start in range(0, records, BURST):
        began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
        for i in range(start, start + BURST):
            call(i)
        cpu += time.thread_time_ns() - began_cpu
        wall += time.perf_counter_ns() - began
        between()
    return wall / records / 1e3, cpu / records / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    diagnostics = logging.getLogger("logwell")
    diagnostics.addHandler(logging.StreamHandler())  # the SDK's own warnings, to stderr
    diagnostics.propagate = False
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdin is not None
    endpoint, api_key = server.stdout.readline().split()
    client = Logwell({
        "api_key": api_key, "endpoint": endpoint, "batch_size": 100, "flush_interval": 0.01,
    })
    handler = LogwellHandler(client=client)
    stub = LogwellHandler(client=client)
    stub._submit = lambda entry, plain=False: None  # type: ignore[method-assign]

    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    def flush() -> None:
        client.flush(30.0)

    def through(target: logging.Handler, extra: bool = False) -> Callable[[int], None]:
        def call(i: int) -> None:
            if extra:
                logger.info("user %s signed in", i, extra={"user_id": i, "plan": "pro"})
            else:
                logger.info("user %s signed in", i)
        logger.handlers = [target]
        return call

    # (name, the scenario's baseline or None, make the call, what to do between bursts)
    scenarios: list[
        tuple[str, str | None, Callable[[], Callable[[int], None]], Callable[[], Any]]
    ] = [
        ("logging alone (no-op handler)", None, lambda: through(Nothing()), lambda: None),
        ("LogwellHandler", "logging alone (no-op handler)", lambda: through(handler), flush),
        ("LogwellHandler, pipeline stubbed", "logging alone (no-op handler)",
         lambda: through(stub), lambda: None),
        ("logging alone, 2 extra fields", None, lambda: through(Nothing(), extra=True),
         lambda: None),
        ("LogwellHandler, 2 extra fields", "logging alone, 2 extra fields",
         lambda: through(handler, extra=True), flush),
        ("client.info() for comparison", None,
         lambda: (lambda i: client.info(f"user {i} signed in", {"user_id": i})), flush),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in scenarios}
    try:
        timed_bursts(through(handler), 10 * BURST, flush)  # warm up: shipper, caches
        for _ in range(args.runs):
            for name, _, make, between in scenarios:
                results[name].append(timed_bursts(make(), args.records, between))
    finally:
        logger.handlers = []
        client.shutdown(30.0)
        server.stdin.close()
        server.wait(30)

    stats = client.stats()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"{args.records} records x {args.runs} runs, bursts of {BURST}")
    print(f"{'us per record (median of runs)':34} {'wall':>6} {'over':>6} {'cpu':>6} {'over':>6}"
          "  wall per run")
    medians = {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in results.items()
    }
    for name, baseline, _, _ in scenarios:
        wall, cpu = medians[name]
        over_wall = over_cpu = " " * 6
        if baseline is not None:
            over_wall = f"{wall - medians[baseline][0]:+6.2f}"
            over_cpu = f"{cpu - medians[baseline][1]:+6.2f}"
        shown = " ".join(f"{w:.2f}" for w, _ in results[name])
        print(f"{name:34} {wall:6.2f} {over_wall} {cpu:6.2f} {over_cpu}  {shown}")
    dropped = {k: v for k, v in stats["dropped"].items() if v}
    print(f"delivered {stats['delivered']} of {stats['logged']}, dropped {dropped or 0}, "
          f"shipper restarts {stats['shipper']['restarts']}")


if __name__ == "__main__":
    main()
