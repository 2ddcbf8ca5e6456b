"""Turning a run's result into the text report, the JSON file and the plot."""

from __future__ import annotations

import math
from typing import Any

import orjson


def _n(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:,.0f}"


def us(ns: float | None) -> str:
    """Nanoseconds shown in microseconds."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "n/a"
    return f"{ns / 1000:,.1f} us" if ns < 10_000_000 else f"{ns / 1e6:,.1f} ms"


def mib(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 1048576:,.1f} MiB"


def render(result: dict[str, Any]) -> str:
    """The human report of one harness run."""
    acc = result["accounting"]
    lat = result["latency_ns"]
    srv = result["server"]
    shp = result["shipper"]
    thr = result["throughput"]
    m = result["machine"]
    lines = [
        f"logwell stress report: {result['description']}",
        f"machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, {m['platform']}",
        "",
        "throughput",
        f"  logged      {_n(acc['logged'])} entries in {thr['duration']:g}s "
        f"= {_n(thr['logged_per_s'])}/s",
        f"  delivered   {_n(acc['delivered'])} entries = {_n(thr['delivered_per_s'])}/s "
        "(over logging + drain)",
        "log-call latency (calling thread, includes GIL waits between the fleet's threads)",
        f"  p50 {us(lat['p50'])}   p99 {us(lat['p99'])}   p99.9 {us(lat['p99.9'])}   "
        f"max {us(lat['max'])}   mean {us(lat['mean'])}   calls {_n(lat['count'])}",
        "accounting",
        f"  logged {_n(acc['logged'])} = delivered {_n(acc['delivered'])} "
        f"+ rejected {_n(acc['rejected'])} + failed {_n(acc['failed'])} "
        f"+ dropped {_n(acc['dropped_total'])} + backlog {_n(acc['backlog'])}"
        f"   -> {'balanced' if acc['unaccounted'] == 0 else 'OFF BY ' + str(acc['unaccounted'])}",
    ]
    reasons = {k: v for k, v in acc["dropped"].items() if v}
    lines.append("  dropped by reason: "
                 + (", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())) or "none"))
    lines.append(f"  altered {_n(acc['altered'])}, truncated {_n(acc['truncated'])}")
    if srv.get("checked"):
        lines.append(
            f"  at the server: {_n(srv['distinct'])} unique ids, duplicates {_n(srv['duplicates'])}"
            f", missing {_n(srv['missing'])}, counted-failed-but-arrived {_n(srv['unexpected'])}")
    else:
        lines.append("  at the server: not checked (real endpoint; ids are in metadata "
                     "stress_stream/stress_seq)")
    drain = result["drain_s"]
    lines.append("time to drain (last worker's flush after logging stopped): "
                 + ("did not drain" if drain is None else f"{drain:.2f}s"))
    timeout = result["config"]["options"].get("shutdown_timeout", 5.0)
    lines.append("exit: " + ", ".join(f"{k} {v:.2f}s" for k, v in result["exit_s"].items())
                 + f" (shutdown timeout {timeout:g}s)")
    cpu = shp["cpu_s"]
    lines.append(
        f"shipper pid {shp['pid']}: CPU {'n/a' if cpu is None else f'{cpu:.2f}s'}"
        + ("" if shp["cpu_percent"] is None else f" ({shp['cpu_percent']:.0f}% of one core)")
        + f", peak RSS {mib(shp['peak_rss'])} (idle {mib(shp['idle_rss'])}), "
        f"requests {_n(shp['requests'])}, retries {_n(shp['retries'])}, "
        f"restarts {_n(shp['restarts'])}")
    if result["faults"]:
        lines.append("faults switched: "
                     + "; ".join(f"{f['t']:.1f}s {f['event']}" for f in result["faults"]))
    if result["problems"]:
        lines.append("problems:")
        lines += [f"  {'FAIL' if p['fatal'] else 'note'}: {p['text']}" for p in result["problems"]]
    lines.append(f"result: {'OK' if result['exit_code'] == 0 else 'FAILED'} "
                 f"(exit code {result['exit_code']})")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str) -> None:
    with open(path, "wb") as f:
        f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: it is an optional extra."""


def plot(result: dict[str, Any], path: str) -> None:
    """Rate, backlog and call latency over time, with fault windows shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install 'logwell[plot]' "
            "(or pip install matplotlib)") from exc
    series = result["series"]
    t = [s["t"] for s in series]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    rate_ax, backlog_ax, lat_ax = axes
    rate_ax.plot(t, [s["rate"] for s in series], label="logged/s")
    delivered = [s["delivered"] for s in series]
    rate_ax.plot(t[1:], [(b - a) / max(1e-9, tb - ta) for a, b, ta, tb
                         in zip(delivered, delivered[1:], t, t[1:], strict=False)],
                 label="delivered/s")
    rate_ax.set_ylabel("entries/s")
    rate_ax.legend(loc="upper right")
    backlog_ax.plot(t, [s["backlog"] for s in series], label="shipper backlog", color="tab:red")
    backlog_ax.set_ylabel("entries")
    backlog_ax.legend(loc="upper right")
    lat_ax.plot(t, [_ms(s["call_p99"]) for s in series], label="call p99")
    lat_ax.plot(t, [_ms(s["call_max"]) for s in series], label="call max")
    lat_ax.set_ylabel("ms")
    lat_ax.set_yscale("log")
    lat_ax.set_xlabel("seconds into the run")
    lat_ax.legend(loc="upper right")
    for fault in result["config"]["faults"]:
        kind, span = fault.split(":")[:2]
        start, end = (float(x.rstrip("s")) for x in span.split("-"))
        for ax in axes:
            ax.axvspan(start, end, alpha=0.12, color="gray")
        rate_ax.text(start, rate_ax.get_ylim()[1] * 0.9, kind, fontsize=8)
    fig.suptitle(result["description"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ms(ns: float | None) -> float:
    return math.nan if ns is None else ns / 1e6
