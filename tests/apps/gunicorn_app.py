"""A WSGI app for the Gunicorn fleet test: one entry per request, the worker's pid in the body.

The client is created at import: in the master with ``--preload`` (workers share
its shipper), in every worker without it (one shipper per worker).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import fleetenv

client = fleetenv.client(service="gunicorn-app")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    request_id = query.get("id", [""])[0]
    pid = os.getpid()
    client.info("request", {"request_id": request_id, "worker_pid": pid})
    body = str(pid).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
