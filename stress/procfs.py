"""CPU time and memory of another process, read from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    """One reading: CPU seconds used so far, resident and peak resident memory in bytes."""

    cpu: float
    rss: int
    peak_rss: int


def sample(pid: int) -> ProcSample | None:
    """Read ``pid``'s CPU and memory; None when it is gone or /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode("ascii", "replace")
    except (OSError, IndexError):
        return None
    # after the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc)
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    memory = {"VmRSS": 0, "VmHWM": 0}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in memory:
            memory[name] = int(value.split()[0]) * 1024
    return ProcSample(cpu, memory["VmRSS"], memory["VmHWM"])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
