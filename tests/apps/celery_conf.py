"""A Celery app bound to kombu's filesystem transport in ``$CELERY_FS_BROKER`` (no Redis needed)."""

from __future__ import annotations

import os

from celery import Celery


def make_app() -> Celery:
    root = os.environ["CELERY_FS_BROKER"]
    for folder in ("queue", "control", "processed"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    app = Celery("celery_app")
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": os.path.join(root, "queue"),
            "data_folder_out": os.path.join(root, "queue"),
            "control_folder": os.path.join(root, "control"),
            "processed_folder": os.path.join(root, "processed"),
            "store_processed": False,
            "polling_interval": 0.05,
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return app
