"""A Celery app for the recipe: worker and task loggers ship to Logwell.

The worker's own records go to the root logger, the tasks' to ``celery.task``
(which does not propagate), so one handler is added to both once Celery has
set them up. A filter puts the current task's id and name on each record; the
handler ships them as metadata.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, current_task
from celery.signals import after_setup_logger, after_setup_task_logger
from celery.utils.log import get_task_logger

from logwell.handler import LogwellHandler

BROKER_DIR = os.environ["HANDLER_CELERY_BROKER_DIR"]

app = Celery("handler_celery_app", broker="filesystem://")
app.conf.update(
    broker_transport_options={
        "data_folder_in": BROKER_DIR,
        "data_folder_out": BROKER_DIR,
        "polling_interval": 0.1,
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
)


class TaskInfoFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` to records logged while a task runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = current_task
        if task and task.request.id is not None:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


_handler: LogwellHandler | None = None


def logwell_handler() -> LogwellHandler:
    """One handler (and one client) for the worker and its pool processes."""
    global _handler
    if _handler is None:
        _handler = LogwellHandler(
            api_key=os.environ["LOGWELL_API_KEY"],
            endpoint=os.environ["LOGWELL_ENDPOINT"],
            service="worker",
            flush_interval=0.05,
            level=logging.INFO,
        )
        _handler.addFilter(TaskInfoFilter())
    return _handler


@after_setup_logger.connect
def ship_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    logger.addHandler(logwell_handler())


@after_setup_task_logger.connect
def ship_task_logs(logger: logging.Logger, **kwargs: Any) -> None:
    logger.addHandler(logwell_handler())


log = get_task_logger(__name__)


@app.task
def add(x: int, y: int) -> int:
    log.info("adding %s and %s", x, y, extra={"x": x, "y": y})
    return x + y
