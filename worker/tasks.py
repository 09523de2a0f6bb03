"""Tasks stay thin: load the job by id, call one core function; the job row is the truth."""

import logging

from core.config import get_settings
from core.runner import context_from_settings, execute_job
from worker.celery_app import app

logger = logging.getLogger(__name__)


RUN_JOB = "mlft.run_job"


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> str:
    state = execute_job(context_from_settings(get_settings()), job_id)
    logger.info("job=%s ended in state %s", job_id, state.value)
    return state.value
