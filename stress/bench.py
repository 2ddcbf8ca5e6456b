"""``python -m stress bench``: the SDK against its performance targets, each beside a baseline.

Every number is the median of repeated runs made in this same invocation, next to a
baseline measured the same way, because this machine is shared and two cores are few:
an absolute number alone says little, the distance to the baseline says more.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import logging
import math
import os
import signal
import struct
import subprocess
import sys
import termios
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import urllib3

from logwell import Logwell
from stress import procfs
from stress.harness import machine
from stress.metrics import median, summarize
from stress.report import mib
from stress.server import ServerProcess

MESSAGE = "user signed in"
METADATA = {"request_id": "9f3c2a7be01d4c55", "user_id": "48213", "path": "/api/v1/orders",
            "duration_ms": 12.5}
_PIPE_SIZE = 1 << 20
#: Calls per timed loop: their frames (~200-260 bytes each) fit well within the 1 MiB pipe, so
#: no loop meets a full pipe (which would make calls cheaper by dropping entries).
LOOP = 2_000

LogFn = Callable[[str, dict[str, Any]], None]


@dataclass
class Target:
    """One target of the issue, the measured value and whether it is met."""

    name: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured


@dataclass
class Bench:
    """Settings and the collected results of one ``bench`` invocation."""

    repeats: int = 5
    quick: bool = False
    out: Any = sys.stdout
    results: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


# -- helpers ------------------------------------------------------------------------------

def _client(server: ServerProcess, **options: Any) -> Logwell:
    config: dict[str, Any] = {"api_key": server.api_key, "endpoint": server.endpoint,
                              "service": "bench"}
    config.update(options)
    client = Logwell(config)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not client.stats()["shipper"]["pid"] and time.monotonic() < deadline:
        time.sleep(0.01)
    client.info("warm-up", METADATA)
    client.flush(10)
    return client


def _drops(stats: dict[str, Any]) -> int:
    return int(sum(stats["dropped"].values()))


class FloorPipe:
    """The floor of any log call: a dict, orjson and one write to a pipe that ``cat`` drains."""

    def __init__(self) -> None:
        read_fd, self.fd = os.pipe()
        os.set_blocking(self.fd, False)
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except (OSError, AttributeError):
            pass
        self._cat = subprocess.Popen(["cat"], stdin=read_fd, stdout=subprocess.DEVNULL)
        os.close(read_fd)
        self.full = 0
        fd, dumps, now = self.fd, orjson.dumps, time.time

        def log(message: str, metadata: dict[str, Any]) -> None:
            try:
                os.write(fd, b"E1 " + dumps({"level": "info", "message": message,
                                             "timestamp": now(), "metadata": metadata}) + b"\n")
            except BlockingIOError:
                self.full += 1

        self.log: LogFn = log

    def drain(self) -> None:
        for _ in range(2_000):
            pending = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4))[0]
            if not pending:
                return
            time.sleep(0.001)

    def close(self) -> None:
        os.close(self.fd)
        self._cat.wait(10)


def _null_logger() -> LogFn:
    logger = logging.getLogger("stress.bench.null")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def log(message: str, metadata: dict[str, Any]) -> None:
        logger.info(message, extra=metadata)

    return log


def _timer_overhead() -> float:
    clock = time.perf_counter_ns
    samples = array("q")
    for _ in range(20_000):
        t0 = clock()
        samples.append(clock() - t0)
    return float(median(sorted(samples)))


def _bulk(fn: LogFn, calls: int, settle: Callable[[], None],
          prepare: Callable[[], None] = lambda: None) -> float:
    """Mean ns per call over loops of LOOP calls with nothing else in them."""
    clock = time.perf_counter_ns
    spent = 0
    for _ in range(max(1, calls // LOOP)):
        prepare()
        t0 = clock()
        for _ in range(LOOP):
            fn(MESSAGE, METADATA)
        spent += clock() - t0
        settle()
    return spent / (max(1, calls // LOOP) * LOOP)


def _timed(fn: LogFn, calls: int, settle: Callable[[], None],
           prepare: Callable[[], None] = lambda: None) -> array[int]:
    """Every call's duration in ns (timer overhead included)."""
    clock = time.perf_counter_ns
    out = array("q")
    for _ in range(max(1, calls // LOOP)):
        prepare()
        for _ in range(LOOP):
            t0 = clock()
            fn(MESSAGE, METADATA)
            out.append(clock() - t0)
        settle()
    return out


def _paced(fn: LogFn, rate: float, seconds: float) -> array[int]:
    """Call at a steady rate for a while; every call's duration in ns."""
    clock = time.perf_counter_ns
    sleep = time.sleep
    period = 1e9 / rate
    out = array("q")
    start = clock()
    end = start + int(seconds * 1e9)
    sent = 0
    while True:
        now = clock()
        if now >= end:
            break
        due = start + sent * period
        if now < due:
            sleep((due - now) / 1e9)
            continue
        t0 = clock()
        fn(MESSAGE, METADATA)
        out.append(clock() - t0)
        sent += 1
    return out


def _fmt_ns(ns: float) -> str:
    if math.isnan(ns):
        return "n/a"
    return f"{ns / 1000:,.2f} us" if ns < 1e6 else f"{ns / 1e6:,.2f} ms"


# -- 1. log-call cost -----------------------------------------------------------------------

def bench_call_cost(b: Bench, server: ServerProcess) -> None:
    calls = (10 if b.quick else 25) * LOOP
    b.say("1. log-call cost: info(message, 4-key metadata), calling thread, "
          f"median of {b.repeats} runs of {calls:,} calls each")
    plain = _client(server)
    located = _client(server, capture_source_location=True)
    child = plain.child({"tenant": "acme"})
    floor = FloorPipe()
    shipper = int(plain.stats()["shipper"]["pid"])

    def pause() -> None:  # the pipe holds a whole loop, so the shipper may sleep through it
        os.kill(shipper, signal.SIGSTOP)

    def resume() -> None:
        os.kill(shipper, signal.SIGCONT)
        plain.flush(30)

    def nothing() -> None:
        pass

    variants: list[tuple[str, LogFn, Callable[[], None], Callable[[], None]]] = [
        ("logwell info()", plain.info, lambda: plain.flush(30), nothing),
        ("  capture_source_location=True", located.info, lambda: located.flush(30), nothing),
        ("  through child()", child.info, lambda: plain.flush(30), nothing),
        ("  shipper paused during the loop", plain.info, resume, pause),
        ("baseline: orjson + os.write (floor)", floor.log, floor.drain, nothing),
        ("baseline: logging + NullHandler", _null_logger(), nothing, nothing),
    ]
    overhead = _timer_overhead()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in variants}
    before = {id(c): _drops(c.stats()) for c in (plain, located)}
    for _ in range(b.repeats):
        for name, fn, settle, prepare in variants:
            mean = _bulk(fn, calls, settle, prepare)
            stats = summarize(_timed(fn, calls, settle, prepare))
            runs[name].append({"mean": mean, "p50": stats["p50"], "p99": stats["p99"],
                               "max": stats["max"]})
    dropped = sum(_drops(c.stats()) - before[id(c)] for c in (plain, located))
    floor.close()
    b.say(f"   {'':38} {'mean':>10} {'p50':>10} {'p99':>10} {'max (median)':>14} "
          f"{'max (worst)':>12}")
    table = {}
    for name, rows in runs.items():
        row = {k: median([r[k] for r in rows]) for k in ("mean", "p50", "p99", "max")}
        row["worst_max"] = max(r["max"] for r in rows)
        table[name.strip()] = row
        b.say(f"   {name:38} {_fmt_ns(row['mean']):>10} {_fmt_ns(row['p50']):>10} "
              f"{_fmt_ns(row['p99']):>10} {_fmt_ns(row['max']):>14} "
              f"{_fmt_ns(row['worst_max']):>12}")
    b.say(f"   (mean from untimed loops of {LOOP:,} calls; percentiles from per-call timing, "
          f"which adds ~{overhead:.0f} ns; entries dropped during the runs: {dropped}; "
          f"floor pipe full: {floor.full}; 'shipper paused': the shipper is stopped with "
          "SIGSTOP during each loop, so its reader and sender do not compete for the 2 CPUs)")
    for client in (plain, located):
        client.shutdown(10)
    sdk = table["logwell info()"]
    b.results["call_cost"] = {"variants": table, "timer_overhead_ns": overhead, "dropped": dropped}
    b.targets.append(Target("log-call mean", "<= 2.0 us", _fmt_ns(sdk["mean"]),
                            sdk["mean"] <= 2000 and dropped == 0))
    b.targets.append(Target("log-call p99", "<= 10 us", _fmt_ns(sdk["p99"]),
                            sdk["p99"] <= 10_000 and dropped == 0))


# -- 2. application overhead ----------------------------------------------------------------

def _unit() -> int:
    total = 0
    for i in range(300):
        total += (i * i) % 7
    return total


def _app(units: int, rate: float, fn: LogFn | None) -> tuple[float, float, int]:
    """Run ``units`` of pure-Python work, logging at ``rate`` on the way; wall, CPU, entries."""
    clock = time.perf_counter_ns
    ns_per_entry = 1e9 / rate
    sent = 0
    cpu0 = time.process_time()
    start = clock()
    for _ in range(units):
        _unit()
        due = (clock() - start) / ns_per_entry
        if fn is None:
            while sent < due:
                sent += 1
        else:
            while sent < due:
                fn(MESSAGE, METADATA)
                sent += 1
    return (clock() - start) / 1e9, time.process_time() - cpu0, sent


def _spin(seconds: float) -> subprocess.Popen[bytes]:
    """A neighbour process that keeps the other CPU busy with pure Python for a while."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def bench_overhead(b: Bench, server: ServerProcess, rate: float = 20_000.0) -> None:
    seconds = 1.5 if b.quick else 3.0
    t0 = time.perf_counter()
    for _ in range(2_000):
        _unit()
    units = int(seconds / ((time.perf_counter() - t0) / 2_000))
    b.say(f"2. application overhead: pure-Python CPU work (~{seconds:g}s alone) logging "
          f"{rate:,.0f} entries/s, against the same work without logging; median of "
          f"{b.repeats} rounds")
    client = _client(server)
    floor = FloorPipe()
    shipper_pid = int(client.stats()["shipper"]["pid"])
    rows: dict[str, list[tuple[float, float]]] = {}
    neighbour_cpu: list[float] = []
    logged = 0
    base = client.stats()
    for _ in range(b.repeats):
        wall0, cpu0, _ = _app(units, rate, None)
        before = [procfs.sample(shipper_pid), procfs.sample(server.pid)]
        wall1, cpu1, sent = _app(units, rate, client.info)
        after = [procfs.sample(shipper_pid), procfs.sample(server.pid)]
        client.flush(60)
        logged += sent
        used = sum(a.cpu - b_.cpu for a, b_ in zip(after, before, strict=True) if a and b_)
        neighbour_cpu.append(used / wall1)
        wall2, cpu2, _ = _app(units, rate, floor.log)
        floor.drain()
        spinner = _spin(seconds * 2)
        wall3, cpu3, _ = _app(units, rate, None)
        spinner.kill()
        spinner.wait()
        for name, wall, cpu in (("logwell", wall1, cpu1), ("floor", wall2, cpu2),
                                ("spin", wall3, cpu3)):
            rows.setdefault(name, []).append((wall / wall0 - 1, cpu / cpu0 - 1))
    end = client.stats()
    delivered = end["delivered"] - base["delivered"]
    all_delivered = delivered == logged == end["logged"] - base["logged"]
    client.shutdown(10)
    floor.close()
    table = {name: {"wall_percent": median([w for w, _ in runs]) * 100,
                    "cpu_percent": median([c for _, c in runs]) * 100,
                    "runs": [round(w * 100, 1) for w, _ in runs]}
             for name, runs in rows.items()}
    labels = {"logwell": "logwell info() at 20,000/s",
              "floor": "baseline: orjson + os.write at 20,000/s",
              "spin": "baseline: no logging, other CPU kept busy"}
    b.say(f"   {'':44} {'wall':>8} {'app CPU':>8}   wall per round")
    for name, row in table.items():
        b.say(f"   {labels[name]:44} {row['wall_percent']:>+7.1f}% {row['cpu_percent']:>+7.1f}%   "
              + ", ".join(f"{r:+.1f}%" for r in row["runs"]))
    b.say(f"   entries logged {logged:,}, delivered {delivered:,} "
          f"({'all' if all_delivered else 'NOT all'}); shipper + server used "
          f"{median(neighbour_cpu) * 100:.0f}% of a CPU meanwhile (on this VM a busy neighbour "
          "CPU slows pure-Python work, see the last row)")
    slowdown = table["logwell"]["wall_percent"]
    b.results["overhead"] = {"rows": table, "logged": logged, "delivered": delivered,
                             "rate": rate, "neighbour_cpu": median(neighbour_cpu)}
    b.targets.append(Target("overhead at 20,000 entries/s", "<= 5%, all delivered",
                            f"{slowdown:+.1f}% wall ({table['logwell']['cpu_percent']:+.1f}% "
                            f"app CPU), {delivered:,}/{logged:,}",
                            slowdown <= 5.0 and all_delivered))


# -- 3. shipper throughput ------------------------------------------------------------------

def _produce(client: Logwell, count: int, in_flight: int) -> None:
    """Log flat out, pausing only while this process has ``in_flight`` entries unsettled.

    Log calls never block, so a producer faster than the shipper would fill the pipe and
    measure drops, not delivery; ``in_flight`` stays below what the 1 MiB pipe holds.
    """
    info = client.info
    done = 0
    while done < count:
        step = min(500, count - done)
        for _ in range(step):
            info(MESSAGE, METADATA)
        done += step
        while client.stats()["backlog"] > in_flight:
            time.sleep(0.0002)


def _settled(client: Logwell, target: int, timeout: float) -> float | None:
    """Monotonic time at which this process's first ``target`` entries were settled
    (delivered, failed or dropped); None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.stats()
        if stats["logged"] - stats["backlog"] >= target:
            return time.monotonic()
        time.sleep(0.002)
    return None


def _one_process(server: ServerProcess, count: int) -> tuple[float, int]:
    client = _client(server, batch_size=100)
    base = client.stats()
    start = time.monotonic()
    _produce(client, count, 4_000)
    end = _settled(client, base["logged"] + count, 120)
    stats = client.stats()
    delivered = stats["delivered"] - base["delivered"]
    drops = count - delivered
    client.shutdown(10)
    return (delivered / (end - start) if end else math.nan), drops


def _forked(server: ServerProcess, count: int, processes: int) -> tuple[float, int]:
    client = _client(server, batch_size=100)
    base = client.stats()["shipper"]
    settled0 = base["delivered"] + base["failed"] + base["dropped"]
    start = time.monotonic() + 0.2
    pids = []
    share = count // processes
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                time.sleep(max(0.0, start - time.monotonic()))
                _produce(client, share, 4_000 // processes)
                client.flush(120)
                code = 0 if client.stats()["delivered"] == share else 3
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    count = share * processes
    end = None
    deadline = time.monotonic() + 120
    running = set(pids)
    while time.monotonic() < deadline:
        shipper = client.stats()["shipper"]
        if shipper["delivered"] + shipper["failed"] + shipper["dropped"] >= settled0 + count:
            end = time.monotonic()  # every entry settled in the shipper
            break
        running = {p for p in running if os.waitpid(p, os.WNOHANG)[0] == 0}
        if not running:  # children flush before they exit; some entries never reached it
            end = time.monotonic()
            break
        time.sleep(0.002)
    delivered = client.stats()["shipper"]["delivered"] - base["delivered"]
    for pid in running:
        os.waitpid(pid, 0)
    client.shutdown(10)
    return (delivered / (end - start) if end else math.nan), count - delivered


def _ceiling(server: ServerProcess, count: int) -> float:
    """What the bundled server takes from one connection: pre-encoded 100-entry bodies."""
    entry = orjson.dumps({"level": "info", "message": MESSAGE,
                          "timestamp": "2026-01-01T00:00:00.000Z", "service": "bench",
                          "metadata": METADATA})
    body = b"[" + b",".join([entry] * 100) + b"]"
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    url = f"{server.endpoint}/v1/ingest"
    start = time.monotonic()
    for _ in range(count // 100):
        pool.request("POST", url, body=body, headers=headers)
    elapsed = time.monotonic() - start
    pool.clear()
    return count / elapsed


def bench_throughput(b: Bench, server: ServerProcess) -> None:
    count = 100_000 if b.quick else 200_000
    repeats = max(1, min(3, b.repeats))
    b.say(f"3. shipper throughput: {count:,} entries flat out (batch_size=100), entries/s "
          f"delivered to the bundled server, median of {repeats} runs")
    rows: dict[str, list[float]] = {"1 process": [], "4 forked processes": [],
                                    "baseline: server ceiling (urllib3, 1 connection)": []}
    drops = 0
    for _ in range(repeats):
        rate, lost = _one_process(server, count)
        rows["1 process"].append(rate)
        drops += lost
        rate, lost = _forked(server, count, 4)
        rows["4 forked processes"].append(rate)
        drops += lost
        rows["baseline: server ceiling (urllib3, 1 connection)"].append(_ceiling(server, count))
    table = {name: median(v) for name, v in rows.items()}
    for name, rate in table.items():
        b.say(f"   {name:50} {rate:>10,.0f} entries/s   (runs: "
              f"{', '.join(f'{r:,.0f}' for r in rows[name])})")
    b.say(f"   entries dropped during the runs: {drops}")
    b.results["throughput"] = {"entries_per_s": table, "runs": rows, "dropped": drops}
    worst = min(table["1 process"], table["4 forked processes"])
    b.targets.append(Target("shipper throughput", ">= 50,000 entries/s",
                            f"{table['1 process']:,.0f} (1 proc), "
                            f"{table['4 forked processes']:,.0f} (4 procs)",
                            worst >= 50_000 and drops == 0))


# -- 4. outage --------------------------------------------------------------------------------

def bench_outage(b: Bench, server: ServerProcess, rate: float = 10_000.0) -> None:
    seconds = 2.0 if b.quick else 4.0
    repeats = max(1, min(3, b.repeats))
    b.say(f"4. outage: one thread logging {rate:,.0f} entries/s for {seconds:g}s per run, "
          f"median of {repeats} runs (max: worst run)")
    modes = [
        ("baseline: floor (orjson + os.write), paced", None, {}),
        ("baseline: server healthy", "healthy", {}),
        ("server refuses connections", "outage", {}),
        ("  ... and the backlog full (max_queue_size=5000)", "outage", {"max_queue_size": 5_000}),
        ("server accepts, never answers", "hang", {}),
    ]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in modes}
    dropped: dict[str, int] = {name: 0 for name, *_ in modes}
    for _ in range(repeats):
        for name, fault, options in modes:
            if fault is None:
                floor = FloorPipe()
                lat = _paced(floor.log, rate, seconds)
                floor.close()
            else:
                client = _client(server, **options)
                base = _drops(client.stats())
                if fault != "healthy":
                    server.set_fault(fault, True)
                try:
                    lat = _paced(client.info, rate, seconds)
                    dropped[name] += _drops(client.stats()) - base
                finally:
                    if fault != "healthy":
                        server.set_fault(fault, False)
                client.shutdown(1.0)
            stats = summarize(lat)
            stats["over_1ms"] = sum(1 for x in lat if x > 1_000_000)
            rows[name].append(stats)
    b.say(f"   {'':50} {'p50':>10} {'p99':>10} {'p99.9':>10} {'max':>10} {'>1 ms':>7} "
          f"{'dropped':>8}")
    table = {}
    for name, runs in rows.items():
        row = {k: median([r[k] for r in runs]) for k in ("p50", "p99", "p99.9")}
        row["max"] = max(r["max"] for r in runs)
        row["over_1ms"] = sum(r["over_1ms"] for r in runs)
        row["calls"] = sum(r["n"] for r in runs)
        table[name.strip(" .")] = row
        b.say(f"   {name:50} {_fmt_ns(row['p50']):>10} {_fmt_ns(row['p99']):>10} "
              f"{_fmt_ns(row['p99.9']):>10} {_fmt_ns(row['max']):>10} {row['over_1ms']:>7,} "
              f"{dropped[name]:>8,}")
    b.say(f"   (>1 ms: calls over 1 ms among ~{row['calls']:,} per mode; dropped: entries the "
          "shipper could not hold, log calls never wait for it)")
    b.results["outage"] = {"modes": table, "dropped": dropped, "rate": rate}
    worst = max(table[n.strip(" .")]["max"] for n, f, _ in modes if f not in (None, "healthy"))
    b.targets.append(Target("no log call over 1 ms during an outage", "max <= 1 ms",
                            f"max {_fmt_ns(worst)}", worst <= 1e6))


# -- 5. shipper memory --------------------------------------------------------------------

def _burst(server: ServerProcess, count: int, outage: bool) -> dict[str, Any]:
    client = _client(server)
    pid = int(client.stats()["shipper"]["pid"])
    idle = procfs.sample(pid)
    if outage:
        server.set_fault("outage", True)
    info = client.info
    start = time.monotonic()
    peak = 0
    try:
        for chunk in range(count // 10_000):
            for _ in range(10_000):
                info(MESSAGE, METADATA)
            if chunk % 10 == 0:
                now = procfs.sample(pid)
                peak = max(peak, now.peak_rss if now else 0)
        elapsed = time.monotonic() - start
        time.sleep(0.5)  # let the reader take in what is still in the pipe
        stats = client.stats()
        end = procfs.sample(pid)
    finally:
        if outage:
            server.set_fault("outage", False)
    client.shutdown(1.0)
    return {"idle_rss": idle.rss if idle else 0,
            "peak_rss": max(peak, end.peak_rss if end else 0),
            "seconds": elapsed, "backlog": stats["shipper"]["backlog"],
            "backlog_bytes": stats["shipper"]["backlog_bytes"],
            "dropped": {k: v for k, v in stats["dropped"].items() if v}}


def bench_memory(b: Bench, server: ServerProcess) -> None:
    count = 300_000 if b.quick else 1_000_000
    repeats = max(1, min(3, b.repeats))
    b.say(f"5. shipper memory: a burst of {count:,} entries flat out, default settings "
          f"(max_queue_size 100,000, max_queue_bytes 64 MiB), median of {repeats} runs")
    rows: dict[str, list[dict[str, Any]]] = {"server up": [], "server refusing connections": []}
    for _ in range(repeats):
        rows["server up"].append(_burst(server, count, outage=False))
        rows["server refusing connections"].append(_burst(server, count, outage=True))
    table = {}
    for name, runs in rows.items():
        row = {"idle_rss": median([r["idle_rss"] for r in runs]),
               "peak_rss": median([r["peak_rss"] for r in runs]),
               "worst_peak_rss": max(r["peak_rss"] for r in runs),
               "seconds": median([r["seconds"] for r in runs]),
               "dropped": runs[-1]["dropped"], "backlog": runs[-1]["backlog"]}
        table[name] = row
        b.say(f"   {name:30} peak RSS {mib(row['peak_rss'])} (worst {mib(row['worst_peak_rss'])}; "
              f"baseline idle shipper {mib(row['idle_rss'])}); burst took {row['seconds']:.1f}s; "
              f"backlog after {row['backlog']:,}; dropped {row['dropped'] or 'none'}")
    b.results["memory"] = table
    idle = min(r["idle_rss"] for r in table.values())
    worst = max(r["worst_peak_rss"] for r in table.values())
    bound = idle + 1.5 * 64 * 1024 * 1024
    b.targets.append(Target("shipper RSS under a 1M burst", "bounded: <= idle + 1.5 x "
                            "max_queue_bytes", f"peak {mib(worst)} (bound {mib(bound)})",
                            worst <= bound))


# -- main -------------------------------------------------------------------------------

BENCHES: dict[str, Callable[[Bench, ServerProcess], None]] = {
    "1": bench_call_cost, "2": bench_overhead, "3": bench_throughput, "4": bench_outage,
    "5": bench_memory,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, fewer repeats")
    parser.add_argument("--only", default="1,2,3,4,5", help="which benchmarks, e.g. 1,4")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    chosen = [x.strip() for x in args.only.split(",") if x.strip()]
    if not chosen or any(x not in BENCHES for x in chosen):
        parser.error("--only takes numbers from 1 to 5, comma-separated")
    b = Bench(repeats=3 if args.quick and args.repeats == 5 else max(1, args.repeats),
              quick=args.quick)
    info = machine()
    b.say(f"logwell bench: Python {info['python']} ({info['implementation']}), "
          f"{info['cpus']} CPUs ({info['cpu']}), {info['platform']}")
    b.say(f"load average before: {', '.join(f'{x:.2f}' for x in info['load'] or ())}; "
          "server: bundled, in its own process on loopback")
    gc.collect()
    started = time.monotonic()
    with ServerProcess() as server:
        for key in chosen:
            b.say()
            BENCHES[key](b, server)
    b.say()
    b.say("targets")
    for t in b.targets:
        verdict = "n/a" if t.met is None else "met" if t.met else "MISSED"
        b.say(f"   {t.name:42} {t.wanted:34} {t.measured:44} {verdict}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    b.say(f"load average after: {', '.join(f'{x:.2f}' for x in load)}; "
          f"bench took {time.monotonic() - started:.0f}s")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"machine": info, "results": b.results,
                                  "targets": [t.__dict__ for t in b.targets]},
                                 option=orjson.OPT_INDENT_2))
    return 0
