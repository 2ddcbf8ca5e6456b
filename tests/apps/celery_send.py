"""Send N tasks of each kind to the filesystem broker: ``python celery_send.py N``."""

from __future__ import annotations

import sys

from celery_conf import make_app

app = make_app()
for task in range(int(sys.argv[1])):
    app.send_task("log_shared", args=[task])
    app.send_task("log_lazy", args=[task])
print("SENT", flush=True)
