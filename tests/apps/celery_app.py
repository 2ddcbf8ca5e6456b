"""Tasks for the Celery fleet test, logging through logwell.

``client`` is created at import, in the worker's main process, before the
prefork pool forks its (daemonic) children, which then share its shipper.
``log_lazy`` instead creates a client at its first use inside a pool child.
"""

from __future__ import annotations

import os

import fleetenv
from celery_conf import make_app

from logwell import Logwell

app = make_app()
client = fleetenv.client(service="celery-app")
_lazy: dict[int, Logwell] = {}


@app.task(name="log_shared")
def log_shared(task: int) -> None:
    client.info("task", {"task": task, "how": "shared", "worker_pid": os.getpid()})


@app.task(name="log_lazy")
def log_lazy(task: int) -> None:
    pid = os.getpid()
    if pid not in _lazy:  # first use inside this daemonic pool child
        _lazy[pid] = fleetenv.client(service="celery-lazy")
    _lazy[pid].info("task", {"task": task, "how": "lazy", "worker_pid": pid})
