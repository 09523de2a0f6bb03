"""Crash recovery in every worker: when it starts, and then every lease period, running jobs
whose worker died (their lease expired) are re-queued, or failed after their last attempt.

Celery alone cannot do this: with late acknowledgement Redis hands a dead worker's task out
again only after the visibility timeout, which is days so that long trainings are not doubled.
"""

import logging
import threading
import time

from celery.signals import worker_ready

from core.config import Settings, get_settings
from core.db import session_factory, session_scope
from core.leases import recover_abandoned_jobs
from worker.celery_app import app
from worker.tasks import RUN_JOB

logger = logging.getLogger(__name__)


def sweep_abandoned_jobs(settings: Settings) -> list[str]:
    with session_scope(session_factory(settings.resolved_database_url)) as session:
        return recover_abandoned_jobs(
            session,
            max_attempts=settings.max_attempts,
            enqueue=lambda job_id: app.send_task(RUN_JOB, args=[job_id]),
        )


def _sweep_forever(settings: Settings) -> None:
    while True:
        try:
            requeued = sweep_abandoned_jobs(settings)
            if requeued:
                logger.warning("re-queued jobs of dead workers: %s", ", ".join(requeued))
        except Exception:  # the database may be briefly away; the next round retries
            logger.exception("sweep for abandoned jobs failed")
        time.sleep(settings.job_lease_seconds)


@worker_ready.connect
def start_sweeping(**_kwargs: object) -> None:
    thread = threading.Thread(
        target=_sweep_forever,
        args=(get_settings(),),
        name="abandoned-job-sweep",
        daemon=True,
    )
    thread.start()
