"""Command line: ``python -m stress [PRESET] [options]`` and ``python -m stress bench``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stress.faults import FaultError, parse_faults


def _option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set wants NAME=VALUE, got {text!r}")
    parsed: Any = value
    if value.lower() in ("true", "false"):
        parsed = value.lower() == "true"
    else:
        for kind in (int, float):
            try:
                parsed = kind(value)
                break
            except ValueError:
                continue
    return name.strip(), parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stress",
        description="Stress the logwell SDK: a pre-fork fleet of P processes x T threads "
        "logging through one shipper, against the bundled server (in its own process) or "
        "a real endpoint, with fault schedules. 'python -m stress bench' runs the benchmarks.",
        epilog="fault kinds: outage, hang, slow[:SECONDS], 503, 500, 429[:RETRY_AFTER], reset; "
        "e.g. --faults outage:2s-6s,503:8s-9s --faults slow:10s-12s:0.5s")
    parser.add_argument("preset", nargs="?", default=None,
                        help="smoke, outage, fleet or soak (options below override it)")
    parser.add_argument("-p", "--processes", type=int, help="worker processes forked (P)")
    parser.add_argument("-t", "--threads", type=int, help="logging threads per worker (T)")
    parser.add_argument("-r", "--rate", type=float,
                        help="entries/s for the whole fleet; 0 = every thread flat out")
    parser.add_argument("-d", "--duration", type=float, help="seconds of logging")
    parser.add_argument("--faults", action="append", default=None, metavar="SCHEDULE",
                        help="KIND:START-END[:ARG], comma-separated or repeated")
    parser.add_argument("--no-faults", action="store_true", help="drop the preset's faults")
    parser.add_argument("--endpoint", help="a real Logwell server instead of the bundled one")
    parser.add_argument("--api-key", help="its API key (lw_...)")
    parser.add_argument("--set", dest="options", action="append", type=_option, default=[],
                        metavar="NAME=VALUE", help="a client option, e.g. --set batch_size=100")
    parser.add_argument("--drain-timeout", type=float, help="seconds a worker waits to drain")
    parser.add_argument("--interval", type=float, help="seconds per sample (default 1)")
    parser.add_argument("--no-child", action="store_true", help="log through the root client "
                        "instead of child() loggers")
    parser.add_argument("--seed", type=int, help="seed of the message mix")
    parser.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw rate, backlog and latency "
                        "over time (needs matplotlib: pip install 'logwell[plot]')")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from stress.bench import main as bench_main

        return bench_main(argv[1:])
    from stress import report
    from stress.harness import RunConfig, run
    from stress.presets import presets

    parser = _parser()
    args = parser.parse_args(argv)
    known = presets()
    if args.preset is not None and args.preset not in known:
        parser.error(f"unknown preset {args.preset!r}; choose from {', '.join(known)} or bench")
    cfg = known[args.preset] if args.preset else RunConfig()
    for name in ("processes", "threads", "rate", "duration", "drain_timeout", "interval", "seed"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    try:
        if args.no_faults:
            cfg.faults = []
        if args.faults:
            cfg.faults = parse_faults(args.faults)
    except FaultError as exc:
        parser.error(str(exc))
    if args.endpoint or args.api_key:
        if not (args.endpoint and args.api_key):
            parser.error("--endpoint and --api-key go together")
        if cfg.faults:
            parser.error("faults act on the bundled server; add --no-faults for a real endpoint")
        cfg.endpoint, cfg.api_key = args.endpoint, args.api_key
        if cfg.rate <= 0 or cfg.rate > 1_000:
            print("note: a real Logwell server takes about 1,000 entries/s per API key "
                  "(10 requests/s of 100); above that expect 429 answers and a growing backlog",
                  file=sys.stderr)
    cfg.options.update(dict(args.options))
    cfg.use_child = not args.no_child
    if cfg.processes < 1 or cfg.threads < 1 or cfg.duration <= 0 or cfg.interval <= 0:
        parser.error("processes, threads, duration and interval must be positive")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, an optional extra: "
                         "pip install 'logwell[plot]' (or pip install matplotlib)")
    print(f"running {cfg.describe()}", file=sys.stderr)
    result = run(cfg, quiet=args.quiet)
    print(report.render(result))
    if args.json:
        report.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(result, args.plot)
        print(f"wrote {args.plot}")
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
