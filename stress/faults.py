"""Fault schedules: ``KIND:START-END[:ARG]``, switched on and off during a run.

Faults are what a shipper must survive, so a run says exactly when each one held:
``outage:2s-6s`` refuses connections from second 2 to second 6 of the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: kind -> (family, what it does, default argument); faults of one family exclude each other
KINDS: dict[str, tuple[str, str, float | None]] = {
    "outage": ("listen", "refuse connections (nothing listens on the port)", None),
    "hang": ("hang", "accept every request and never answer it", None),
    "slow": ("delay", "answer every request after ARG seconds (default 1)", 1.0),
    "503": ("storm", "answer 503 Service Unavailable", None),
    "500": ("storm", "answer 500 Internal Server Error", None),
    "429": ("storm", "answer 429 with Retry-After: ARG seconds (default 1)", 1.0),
    "reset": ("storm", "reset the connection instead of answering", None),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class FaultError(ValueError):
    """A fault schedule that cannot be run; the message says how to write it."""


def parse_duration(text: str) -> float:
    """Seconds from ``1.5``, ``1.5s``, ``250ms`` or ``2m``."""
    match = _DURATION.match(text)
    if not match:
        raise FaultError(f"{text!r} is not a duration; write e.g. 2s, 1.5s, 250ms or 1m")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Fault:
    """One fault of one kind between two moments of the run (seconds from its start)."""

    kind: str
    start: float
    end: float
    arg: float | None = None

    @property
    def family(self) -> str:
        return KINDS[self.kind][0]

    def __str__(self) -> str:
        arg = f":{self.arg:g}" if self.arg is not None else ""
        return f"{self.kind}:{self.start:g}s-{self.end:g}s{arg}"


def parse_fault(text: str) -> Fault:
    """Parse one ``KIND:START-END[:ARG]``."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or "-" not in parts[1]:
        raise FaultError(f"fault {text!r} must look like KIND:START-END[:ARG], e.g. outage:2s-6s")
    kind = parts[0].strip().lower()
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    start_text, end_text = parts[1].split("-", 1)
    start, end = parse_duration(start_text), parse_duration(end_text)
    if end <= start:
        raise FaultError(f"fault {text!r} ends before it starts")
    default = KINDS[kind][2]
    if len(parts) == 3:
        if default is None:
            raise FaultError(f"fault kind {kind!r} takes no argument")
        arg: float | None = parse_duration(parts[2])
    else:
        arg = default
    return Fault(kind, start, end, arg)


def parse_faults(specs: Iterable[str]) -> list[Fault]:
    """Parse comma-separated schedules; two faults of one family must not overlap."""
    faults = sorted(
        (parse_fault(item) for spec in specs for item in spec.split(",") if item.strip()),
        key=lambda f: f.start,
    )
    for i, first in enumerate(faults):
        for second in faults[i + 1:]:
            if second.family == first.family and second.start < first.end:
                raise FaultError(
                    f"faults {first} and {second} overlap; run them one after the other")
    return faults


class Controller(Protocol):
    """What can switch a fault on and off: the bundled server's control channel."""

    def fault(self, fault: Fault, active: bool) -> None: ...


class Schedule:
    """Switches faults at their times; the caller's loop calls :meth:`tick` often."""

    def __init__(self, faults: Iterable[Fault], controller: Controller) -> None:
        self._controller = controller
        events = [(f.start, 1, f) for f in faults] + [(f.end, 0, f) for f in faults]
        self._events = sorted(events, key=lambda e: (e[0], e[1]))  # ends before starts
        self._next = 0
        self._on: list[Fault] = []
        self.log: list[tuple[float, str]] = []

    def tick(self, elapsed: float) -> None:
        """Apply every event that is due at ``elapsed`` seconds into the run."""
        while self._next < len(self._events) and self._events[self._next][0] <= elapsed:
            _, on, fault = self._events[self._next]
            self._next += 1
            if on:
                self._on.append(fault)
            elif fault in self._on:
                self._on.remove(fault)
            else:
                continue
            self._controller.fault(fault, bool(on))
            self.log.append((elapsed, f"{'begin' if on else 'end'} {fault}"))

    def active(self, elapsed: float) -> list[Fault]:
        """Faults that hold at ``elapsed`` by the schedule."""
        return [f for _, on, f in self._events if on and f.start <= elapsed < f.end]

    def finish(self) -> None:
        """End every fault still on, so that nothing outlives the run."""
        self._next = len(self._events)
        while self._on:
            self._controller.fault(self._on.pop(), False)

    @property
    def last_end(self) -> float:
        return max((e[0] for e in self._events), default=0.0)
