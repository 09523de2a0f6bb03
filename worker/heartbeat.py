"""Each worker's heartbeat (core/service/heartbeats.py), from the moment it is ready until it
stops."""

from celery.signals import worker_ready, worker_shutdown

from core.config import get_settings
from core.service.db import session_factory
from core.service.heartbeats import Heartbeat, WorkerIdentity

_heartbeat: Heartbeat | None = None


@worker_ready.connect
def start_heartbeat(sender: object = None, **_kwargs: object) -> None:
    global _heartbeat
    settings = get_settings()
    _heartbeat = Heartbeat(
        session_factory(settings.resolved_database_url),
        WorkerIdentity.of_this_process(sorted(_consumed_queues(sender))),
        # Three beats per lease: one missed write (a database hiccup) does not count it dead.
        interval=settings.job_lease_seconds / 3,
    )
    _heartbeat.start()


@worker_shutdown.connect
def stop_heartbeat(**_kwargs: object) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


def _consumed_queues(consumer: object) -> list[str]:
    try:
        return [queue.name for queue in consumer.task_consumer.queues]  # type: ignore[attr-defined]
    except AttributeError:  # not a Celery consumer (called by hand): no queues to name
        return []
