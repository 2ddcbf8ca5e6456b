"""The delivery accounting of a run and the checks that decide its exit code.

Every entry a worker logged must end up counted exactly once: delivered, rejected,
failed or dropped for a named reason. The bundled server's id counts then say whether
"delivered" was true (missing) and whether something arrived twice (duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Scheduling noise a process exit may add to the shutdown timeout before it counts as late.
EXIT_SLACK = 0.5


@dataclass
class Accounting:
    """Summed ``Logwell.stats()`` of every process of the fleet."""

    logged: int = 0
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    altered: int = 0
    truncated: int = 0

    @classmethod
    def from_stats(cls, stats: Iterable[Mapping[str, Any]]) -> Accounting:
        total = cls()
        for one in stats:
            total.logged += one["logged"]
            total.delivered += one["delivered"]
            total.rejected += one["rejected"]
            total.failed += one["failed"]
            total.backlog += one["backlog"]
            total.altered += one.get("altered", 0)
            total.truncated += one.get("truncated", 0)
            for reason, count in one["dropped"].items():
                total.dropped[reason] = total.dropped.get(reason, 0) + count
        return total

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def unaccounted(self) -> int:
        """Entries logged but in no counter (negative: counted more than once)."""
        return self.logged - (self.delivered + self.rejected + self.failed + self.dropped_total
                              + self.backlog)

    def to_json(self) -> dict[str, Any]:
        return {"logged": self.logged, "delivered": self.delivered, "rejected": self.rejected,
                "failed": self.failed, "dropped": dict(self.dropped),
                "dropped_total": self.dropped_total, "backlog": self.backlog,
                "altered": self.altered, "truncated": self.truncated,
                "unaccounted": self.unaccounted}


@dataclass(frozen=True)
class Problem:
    """Something the report must say; ``fatal`` ones make the exit code non-zero."""

    fatal: bool
    text: str


def server_view(accounting: Accounting, server: Mapping[str, Any] | None) -> dict[str, Any]:
    """Duplicates and missing entries by unique id at the bundled server."""
    if server is None:
        return {"checked": False}
    distinct = int(server["distinct"])
    return {
        "checked": True,
        "received": int(server["received"]),
        "distinct": distinct,
        "duplicates": int(server["duplicates"]),
        "foreign": int(server.get("foreign", 0)),
        # counted as delivered by the SDK but never stored by the server
        "missing": max(0, accounting.delivered - distinct),
        # stored by the server although the SDK counted them otherwise (e.g. a timeout)
        "unexpected": max(0, distinct - accounting.delivered),
    }


def check(accounting: Accounting, server: Mapping[str, Any], exit_times: Mapping[str, float],
          shutdown_timeout: float, slack: float = EXIT_SLACK) -> list[Problem]:
    """Everything wrong with a finished run; see the module docstring."""
    problems = []
    if accounting.unaccounted:
        problems.append(Problem(True, (
            f"accounting does not balance: logged {accounting.logged} but "
            f"delivered+rejected+failed+dropped+backlog differ by {accounting.unaccounted}")))
    if accounting.backlog:
        problems.append(Problem(True, (
            f"{accounting.backlog} entries were still neither delivered nor counted when the "
            "run ended (drain timed out)")))
    if server.get("checked"):
        if server["missing"]:
            problems.append(Problem(True, (
                f"{server['missing']} entries counted as delivered never reached the server")))
        if server["duplicates"]:
            problems.append(Problem(False, (
                f"{server['duplicates']} entries arrived more than once (at-least-once retry)")))
        if server["unexpected"]:
            problems.append(Problem(False, (
                f"{server['unexpected']} entries reached the server but were counted as "
                "failed or dropped")))
        if server["foreign"]:
            problems.append(Problem(False, f"{server['foreign']} entries without stress ids"))
    for who, seconds in exit_times.items():
        if seconds > shutdown_timeout + slack:
            problems.append(Problem(True, (
                f"{who} took {seconds:.2f}s to exit, more than the shutdown timeout "
                f"({shutdown_timeout:g}s)")))
    return problems


def exit_code(problems: Iterable[Problem]) -> int:
    """1 when any problem is fatal, else 0."""
    return 1 if any(p.fatal for p in problems) else 0
