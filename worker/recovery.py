"""Crash recovery and dispatch in every worker: when it starts, and then every lease period,
running work (jobs, evaluations, replay-set builds) whose worker died (its lease expired) is
re-queued, or failed after its last attempt; queued rows whose task never reached the broker
(it was down when they were submitted) are sent; and queued rows sent before the broker last
restarted are sent again (the restart may have lost their tasks).

Celery alone cannot do this: with late acknowledgement Redis hands a dead worker's task out
again only after the visibility timeout, which is days so that long trainings are not doubled.
"""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

from celery import Celery
from celery.signals import worker_ready

from core.config import Settings, get_settings
from core.service.db import session_factory, session_scope
from core.service.dispatch import WORK_KINDS, resend_lost, resend_undispatched
from core.service.job_logs import delete_ended_lines
from core.service.leases import recover_abandoned
from worker.celery_app import app
from worker.tasks import TASK_BY_KIND

logger = logging.getLogger(__name__)


def send(kind: str, row_id: str) -> None:
    app.send_task(TASK_BY_KIND[kind], args=[row_id])


def sweep_abandoned_work(settings: Settings) -> list[str]:
    """Re-queue (or fail) every kind of abandoned work; returns the ids re-queued."""
    requeued: list[str] = []
    with session_scope(session_factory(settings.resolved_database_url)) as session:
        for kind, table in WORK_KINDS.items():
            requeued += recover_abandoned(
                session,
                table,
                max_attempts=settings.max_attempts,
                enqueue=partial(send, kind),
            )
    return requeued


def sweep_undispatched_work(settings: Settings) -> list[tuple[str, str]]:
    with session_scope(session_factory(settings.resolved_database_url)) as session:
        return resend_undispatched(
            session, grace_seconds=settings.dispatch_grace_seconds, send=send
        )


def sweep_work_lost_with_the_broker(settings: Settings) -> list[tuple[str, str]]:
    started_at = broker_started_at(app)
    if started_at is None:
        return []
    with session_scope(session_factory(settings.resolved_database_url)) as session:
        return resend_lost(session, broker_started_at=started_at, send=send)


def broker_started_at(celery: Celery) -> datetime | None:
    """When the broker server last started, by its own clock: Redis's time less its uptime.
    None for the folder broker, whose messages are files that outlive any process."""
    with celery.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            return None
        client = connection.default_channel.client
        seconds, microseconds = client.time()
        uptime = client.info("server")["uptime_in_seconds"]
    return datetime.fromtimestamp(seconds + microseconds / 1e6 - uptime, UTC)


def sweep_ended_log_lines(settings: Settings) -> int:
    retention = timedelta(seconds=settings.log_lines_retention_seconds)
    with session_scope(session_factory(settings.resolved_database_url)) as session:
        return delete_ended_lines(session, retention)


def _sweep_forever(settings: Settings) -> None:
    while True:
        for name, sweep in (
            ("abandoned work", sweep_abandoned_work),
            ("undispatched work", sweep_undispatched_work),
            ("work lost with the broker", sweep_work_lost_with_the_broker),
            ("log lines of ended work", sweep_ended_log_lines),
        ):
            try:
                swept = sweep(settings)
                if swept:
                    logger.warning("swept %s: %s", name, swept)
            except Exception:  # the database or broker may be briefly away; the next round retries
                logger.exception("sweep for %s failed", name)
        time.sleep(settings.job_lease_seconds)


@worker_ready.connect
def start_sweeping(**_kwargs: object) -> None:
    thread = threading.Thread(
        target=_sweep_forever,
        args=(get_settings(),),
        name="work-sweep",
        daemon=True,
    )
    thread.start()
