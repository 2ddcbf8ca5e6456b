"""``python -m stress``: a pre-fork fleet logging through one shipper, under faults.

The parent builds one client (and so one shipper) and forks P workers from it, as
Gunicorn does; each worker runs T logging threads. The parent switches faults on the
bundled server, samples the shipper from /proc, prints a progress line and in the end
checks that every logged entry is accounted for.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import orjson

from logwell import Logwell
from stress import procfs
from stress.accounting import Accounting, check, exit_code, server_view
from stress.faults import Fault, Schedule
from stress.metrics import Histogram
from stress.server import ServerProcess
from stress.worker import WorkerPlan, fork_worker, read_slots, shared_block

_TICK = 0.05


@dataclass
class RunConfig:
    """One harness run; presets are instances of it."""

    name: str = "custom"
    processes: int = 2
    threads: int = 2
    rate: float = 2_000.0  # entries/s for the whole fleet; 0 = every thread flat out
    duration: float = 10.0
    faults: list[Fault] = field(default_factory=list)
    endpoint: str | None = None
    api_key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # client config overrides
    drain_timeout: float = 60.0
    interval: float = 1.0  # seconds per sample and per latency slice
    use_child: bool = True
    seed: int = 1

    @property
    def shutdown_timeout(self) -> float:
        return float(self.options.get("shutdown_timeout", 5.0))

    def describe(self) -> str:
        rate = "flat out" if self.rate <= 0 else f"{self.rate:,.0f} entries/s"
        faults = ", ".join(map(str, self.faults)) or "none"
        return (f"{self.name}: {self.processes} processes x {self.threads} threads, {rate}, "
                f"{self.duration:g}s, faults: {faults}")


class _ServerFaults:
    """Adapts the server handle to the schedule, remembering what is on for the progress line."""

    def __init__(self, server: ServerProcess | None) -> None:
        self.server = server
        self.active: list[str] = []

    def fault(self, fault: Fault, active: bool) -> None:
        if self.server is not None:
            self.server.fault(fault, active)
        if active:
            self.active.append(fault.kind)
        elif fault.kind in self.active:
            self.active.remove(fault.kind)


class Progress:
    """One line on stderr: rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._quiet = quiet
        self._last = -math.inf
        self._width = 0

    def show(self, elapsed: float, text: str) -> None:
        if self._quiet:
            return
        if self._tty:
            line = f"\r{text}"
            self._stream.write(line + " " * max(0, self._width - len(line)))
            self._width = len(line)
            self._stream.flush()
        elif elapsed - self._last >= 5.0:
            self._last = elapsed
            print(text, file=self._stream, flush=True)

    def done(self) -> None:
        if self._tty and not self._quiet and self._width:
            self._stream.write("\n")
            self._stream.flush()


def _client_config(cfg: RunConfig, endpoint: str, api_key: str) -> dict[str, Any]:
    config: dict[str, Any] = {"api_key": api_key, "endpoint": endpoint, "service": "stress"}
    config.update(cfg.options)
    return config


def _wait_for_shipper(client: Logwell, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = client.stats()["shipper"]["pid"]
        if pid:
            return int(pid)
        time.sleep(0.02)
    return 0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         "")
    except OSError:
        pass
    return {"python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpus": os.cpu_count(), "cpu": model,
            "load": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run(
    cfg: RunConfig, progress_stream: TextIO = sys.stderr, quiet: bool = False
) -> dict[str, Any]:
    """Run the fleet and return the full result (what ``--json`` writes)."""
    server = ServerProcess() if cfg.endpoint is None else None
    try:
        endpoint = server.endpoint if server else str(cfg.endpoint)
        api_key = server.api_key if server else str(cfg.api_key)
        return _run(cfg, server, endpoint, api_key, progress_stream, quiet)
    finally:
        if server is not None:
            server.kill()


def _run(cfg: RunConfig, server: ServerProcess | None, endpoint: str, api_key: str,
         progress_stream: TextIO, quiet: bool) -> dict[str, Any]:
    client = Logwell(_client_config(cfg, endpoint, api_key))  # type: ignore[arg-type]
    shipper_pid = _wait_for_shipper(client)
    idle = procfs.sample(shipper_pid)
    workers = cfg.processes
    block = shared_block(workers)
    threads = workers * cfg.threads
    rate_per_thread = cfg.rate / threads if cfg.rate > 0 else 0.0
    start_ns = time.perf_counter_ns() + 300_000_000  # every worker starts at the same instant
    end_ns = start_ns + int(cfg.duration * 1e9)
    tmp = tempfile.mkdtemp(prefix="logwell-stress-")
    faults = _ServerFaults(server)
    schedule = Schedule(cfg.faults, faults)
    progress = Progress(progress_stream, quiet)
    pids: dict[int, int] = {}
    for index in range(workers):
        plan = WorkerPlan(index, cfg.threads, rate_per_thread, start_ns, end_ns,
                          int(cfg.interval * 1e9), cfg.drain_timeout, cfg.shutdown_timeout,
                          cfg.use_child, cfg.seed)
        pids[fork_worker(plan, client, block, os.path.join(tmp, f"{index}.json"))] = index
    samples: list[dict[str, Any]] = []
    statuses: dict[int, int] = {}
    hard_deadline = cfg.duration + cfg.drain_timeout + 2 * cfg.shutdown_timeout + 30.0
    killed = False
    next_sample = 0.0
    last_logged = 0
    last_cpu: dict[int, float] = {}
    peak_rss = idle.peak_rss if idle else 0
    try:
        while len(statuses) < len(pids):
            elapsed = (time.perf_counter_ns() - start_ns) / 1e9
            schedule.tick(elapsed)
            for pid in pids:
                if pid not in statuses:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        statuses[pid] = os.waitstatus_to_exitcode(status)
            if elapsed >= next_sample:
                next_sample += cfg.interval
                sample = _sample(client, block, workers, elapsed, last_cpu)
                peak_rss = max(peak_rss, sample["shipper_peak_rss"])
                rate = (sample["logged"] - last_logged) / cfg.interval if elapsed > 0 else 0.0
                last_logged = sample["logged"]
                sample["rate"] = rate
                sample["faults"] = list(faults.active)
                samples.append(sample)
                progress.show(elapsed, _progress_text(sample))
            if elapsed > hard_deadline:
                killed = True
                for pid in pids:
                    if pid not in statuses:
                        os.kill(pid, signal.SIGKILL)
                continue
            time.sleep(_TICK)
    finally:
        for pid in pids:
            if pid not in statuses:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        schedule.finish()
        progress.done()
    before_exit = procfs.sample(shipper_pid)
    parent_stats_before = client.stats()
    started = time.monotonic()
    client.shutdown(cfg.shutdown_timeout)
    parent_exit = time.monotonic() - started
    after = procfs.sample(shipper_pid)
    shipper_gone = _wait_gone(shipper_pid, cfg.shutdown_timeout + 5.0)
    shipper_exit = time.monotonic() - started
    final_proc = after or before_exit
    results = [_load(os.path.join(tmp, f"{i}.json")) for i in range(workers)]
    for index in range(workers):
        try:
            os.unlink(os.path.join(tmp, f"{index}.json"))
        except OSError:
            pass
    try:
        os.rmdir(tmp)
    except OSError:
        pass
    server_counts = server.stop() if server else None
    return _assemble(cfg, results, client.stats(), parent_stats_before, samples, schedule.log,
                     server_counts, start_ns, parent_exit, shipper_exit, shipper_gone,
                     shipper_pid, idle, final_proc, peak_rss, statuses, killed)


def _sample(client: Logwell, block: Any, workers: int, elapsed: float,
            last_cpu: dict[int, float]) -> dict[str, Any]:
    shipper = client.stats()["shipper"]
    slots = read_slots(block, workers)
    proc = procfs.sample(int(shipper["pid"])) if shipper["pid"] else None
    return {
        "t": round(elapsed, 3),
        "logged": sum(s["logged"] for s in slots),
        "delivered": sum(s["delivered"] for s in slots),
        "dropped": sum(s["dropped"] for s in slots),
        "failed": sum(s["failed"] for s in slots),
        "backlog": int(shipper["backlog"]),
        "backlog_bytes": int(shipper["backlog_bytes"]),
        "requests": int(shipper["requests"]),
        "retries": int(shipper["retries"]),
        "shipper_cpu": proc.cpu if proc else None,
        "shipper_rss": proc.rss if proc else 0,
        "shipper_peak_rss": proc.peak_rss if proc else 0,
    }


def _progress_text(s: dict[str, Any]) -> str:
    faults = f"  faults: {','.join(s['faults'])}" if s["faults"] else ""
    return (f"[{s['t']:6.1f}s] logged {s['logged']:,}  delivered {s['delivered']:,}  "
            f"dropped {s['dropped']:,}  backlog {s['backlog']:,}  rate {s['rate']:,.0f}/s"
            f"{faults}")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while procfs.alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            result: dict[str, Any] = orjson.loads(f.read())
            return result
    except (OSError, orjson.JSONDecodeError):
        return None


def _assemble(cfg: RunConfig, results: list[dict[str, Any] | None], parent_stats: Any,
              parent_before: Any, samples: list[dict[str, Any]], fault_log: list[Any],
              server_counts: dict[str, Any] | None, start_ns: int, parent_exit: float,
              shipper_exit: float, shipper_gone: bool, shipper_pid: int,
              idle: procfs.ProcSample | None, final_proc: procfs.ProcSample | None,
              peak_rss: int, statuses: dict[int, int], killed: bool) -> dict[str, Any]:
    ok_results = [r for r in results if r is not None]
    accounting = Accounting.from_stats([r["stats"] for r in ok_results] + [parent_stats])
    server = server_view(accounting, server_counts)
    total = Histogram()
    slices: dict[int, Histogram] = {}
    for result in ok_results:
        for number, (counts, n, total_ns, top) in result["slices"].items():
            hist = Histogram()
            hist.counts = {int(b): c for b, c in counts.items()}
            hist.count, hist.total, hist.max = n, total_ns, top
            slices.setdefault(int(number), Histogram()).merge(hist)
            total.merge(hist)
    start_s = start_ns / 1e9
    logging_end = max((r["logging_end"] for r in ok_results), default=math.nan)
    all_drained = bool(ok_results) and all(r["drained"] for r in ok_results)
    drain = (max(r["drained_at"] for r in ok_results) - max(start_s + cfg.duration, logging_end)
             if all_drained else None)
    exit_times = {"parent shutdown()": parent_exit}
    if ok_results:
        exit_times["slowest worker shutdown()"] = max(r["exit_time"] for r in ok_results)
    if not shipper_gone:
        exit_times["shipper process"] = shipper_exit
    problems = check(accounting, server, exit_times, cfg.shutdown_timeout)
    extra = []
    missing_workers = len(results) - len(ok_results)
    if missing_workers or killed:
        extra.append((True, f"{missing_workers} workers reported nothing"
                      + (" (killed at the hard deadline)" if killed else "")))
    for result in ok_results:
        for error in result["errors"]:
            extra.append((True, f"worker {result['index']} thread failed: {error.strip()}"))
        if result["stuck"]:
            extra.append((True, f"worker {result['index']} threads never finished"))
    bad_status = {pid: s for pid, s in statuses.items() if s != 0}
    if bad_status:
        extra.append((True, f"workers exited with status {sorted(set(bad_status.values()))}"))
    problem_list = [{"fatal": p.fatal, "text": p.text} for p in problems]
    problem_list += [{"fatal": fatal, "text": text} for fatal, text in extra]
    code = max(exit_code(problems), 1 if any(f for f, _ in extra) else 0)
    cpu = (final_proc.cpu - (idle.cpu if idle else 0.0)) if final_proc else None
    span = cfg.duration + (drain or 0.0)
    latency = {
        "count": total.count,
        "mean": total.mean,
        "p50": total.percentile(50),
        "p99": total.percentile(99),
        "p99.9": total.percentile(99.9),
        "max": float(total.max),
    }
    series = []
    for sample in samples:
        number = int(sample["t"] // cfg.interval) - 1
        hist = slices.get(number)
        series.append({**sample,
                       "call_p99": hist.percentile(99) if hist else None,
                       "call_max": hist.max if hist else None})
    return {
        "preset": cfg.name,
        "config": {**asdict(cfg), "faults": [str(f) for f in cfg.faults],
                   "api_key": "(hidden)" if cfg.api_key else None},
        "description": cfg.describe(),
        "machine": machine(),
        "throughput": {
            "logged_per_s": accounting.logged / cfg.duration,
            "delivered_per_s": accounting.delivered / span if span else math.nan,
            "duration": cfg.duration,
        },
        "latency_ns": latency,
        "accounting": accounting.to_json(),
        "server": server,
        "drain_s": drain,
        "exit_s": exit_times,
        "shipper": {
            "pid": shipper_pid,
            "cpu_s": cpu,
            "cpu_percent": 100.0 * cpu / span if cpu is not None and span else None,
            "idle_rss": idle.rss if idle else None,
            "peak_rss": max(peak_rss, final_proc.peak_rss if final_proc else 0),
            "requests": parent_before["shipper"]["requests"],
            "retries": parent_before["shipper"]["retries"],
            "restarts": parent_before["shipper"]["restarts"],
            "exited": shipper_gone,
        },
        "faults": [{"t": round(t, 3), "event": e} for t, e in fault_log],
        "problems": problem_list,
        "exit_code": code,
        "series": series,
    }
