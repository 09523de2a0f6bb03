"""The Celery application: Redis (or any broker URL) when configured, a folder broker otherwise.

The embedded default still runs a real Celery worker; kombu's filesystem transport only replaces
the broker server, so there is one code path from a laptop to a GPU cluster.
"""

from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

from core.config import Settings, get_settings

# Task name -> which queue it goes to: training (and the foundation labelling of replay sets)
# needs a GPU worker, evaluations run on CPU workers.
GPU_TASKS = ("mlft.run_job", "mlft.build_replay_set")
CPU_TASKS = ("mlft.run_evaluation",)
# Redis redelivers an unacknowledged task after this long; training may take many hours, and
# acks_late keeps a task unacknowledged until it ends.
VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600


def broker_settings(settings: Settings) -> tuple[str, dict]:
    if settings.broker_url:
        return settings.broker_url, {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
    folder = (settings.data_dir / "broker").resolve()
    for sub in ("queue", "processed", "control"):
        Path(folder / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        # Without it kombu writes its exchange tables to ./control in whatever folder runs it.
        "control_folder": str(folder / "control"),
        # kombu looks at the folder once a second by default: up to a second before a job starts.
        "polling_interval": 0.1,
    }
    return "filesystem://", options


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _route(queue: str) -> dict[str, str]:
    return {"queue": queue, "exchange": queue, "routing_key": queue}


def make_celery(settings: Settings) -> Celery:
    broker, transport_options = broker_settings(settings)
    app = Celery(
        "mlft", broker=broker, include=["worker.tasks", "worker.recovery", "worker.heartbeat"]
    )
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.gpu_queue,
        # Declared, not only routed to: purge and inspection then know both queues. Each queue
        # has its own exchange: kombu's default binds a declared queue to the default queue's
        # exchange (the gpu one), so the cpu queue was reachable through the gpu exchange.
        task_queues=tuple(_queue(name) for name in (settings.gpu_queue, settings.cpu_queue)),
        task_default_exchange=settings.gpu_queue,
        task_routes={
            **{name: _route(settings.gpu_queue) for name in GPU_TASKS},
            **{name: _route(settings.cpu_queue) for name in CPU_TASKS},
        },
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery(get_settings())
