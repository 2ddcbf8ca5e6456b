"""Client settings for the programs the fleet tests run, taken from their environment.

``fleet_helpers.program_env`` sets ``LOGWELL_ENDPOINT``, ``LOGWELL_API_KEY`` and,
as JSON, any further options in ``LOGWELL_OPTIONS``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from logwell import Logwell


def config(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "api_key": os.environ["LOGWELL_API_KEY"],
        "endpoint": os.environ["LOGWELL_ENDPOINT"],
        "flush_interval": 0.05,
        "shutdown_timeout": 5.0,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.1,
    }
    settings.update(json.loads(os.environ.get("LOGWELL_OPTIONS", "{}")))
    settings.update(overrides)
    return settings


def client(**overrides: Any) -> Logwell:
    return Logwell(config(**overrides))  # type: ignore[arg-type]


def shipper_children() -> list[int]:
    """Pids of the live shipper processes this process started."""
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if b"logwell._shipper" in cmdline and fields[0] != b"Z" and fields[1].decode() == me:
            found.append(int(name))
    return found
