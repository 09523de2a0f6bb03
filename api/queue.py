"""The api's one door to the worker: a broker client to send work rows' tasks and to probe the
queues, and the embedded worker's supervisor. No other api module imports `worker`
(tests/test_architecture.py), so the api's dependence on Celery and the worker is read here."""

import logging
from collections.abc import Callable

from celery import Celery
from fastapi import Request

from core.config import Settings
from worker.celery_app import make_celery
from worker.local import WorkerSupervisor
from worker.tasks import TASK_BY_KIND

logger = logging.getLogger(__name__)
BROKER_TIMEOUT_SECONDS = 3.0


def celery_sender(
    settings: Settings, enqueue_job: Callable[[str], None] | None
) -> Callable[[str, str], None]:
    """Sends a work row's task; `enqueue_job` replaces it for jobs (tests run jobs elsewhere)."""
    celery = make_celery(settings)

    def send(kind: str, row_id: str) -> None:
        if kind == "job" and enqueue_job is not None:
            enqueue_job(row_id)
            return
        celery.send_task(TASK_BY_KIND[kind], args=[row_id])
        logger.info("%s=%s enqueued", kind, row_id)

    return send


def start_embedded_worker(settings: Settings) -> WorkerSupervisor:
    return WorkerSupervisor(settings).start()


def broker_of(request: Request, settings: Settings) -> Celery:
    """One Celery client per app for broker checks and queue depths."""
    if getattr(request.app.state, "broker", None) is None:
        request.app.state.broker = make_celery(settings)
    return request.app.state.broker


def broker_probe(celery: Celery) -> None:
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)


def queue_depths(celery: Celery, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue (Redis: the list length; folder broker: the files)."""
    depths = {}
    with celery.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        for queue in queues:
            try:
                declared = connection.default_channel.queue_declare(queue=queue, passive=True)
                depths[queue] = int(declared.message_count)
            except Exception:  # Redis drops an empty queue's key: passive declare says "no queue"
                depths[queue] = 0
    return depths
