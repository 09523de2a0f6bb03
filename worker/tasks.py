"""Tasks stay thin: load the job by id, call one core function; the job row is the truth."""

import logging

from core.config import get_settings
from core.workflows.context import context_from_settings
from core.workflows.evaluations import execute_evaluation
from core.workflows.replay_sets import execute_replay_set
from core.workflows.runner import execute_job
from worker.celery_app import app

logger = logging.getLogger(__name__)


RUN_JOB = "mlft.run_job"
RUN_EVALUATION = "mlft.run_evaluation"
BUILD_REPLAY_SET = "mlft.build_replay_set"
# core.service.dispatch's kinds of work row -> the task that runs one.
TASK_BY_KIND = {"job": RUN_JOB, "evaluation": RUN_EVALUATION, "replay_set": BUILD_REPLAY_SET}


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> str:
    state = execute_job(context_from_settings(get_settings()), job_id)
    logger.info("job=%s ended in state %s", job_id, state.value)
    return state.value


@app.task(name=RUN_EVALUATION)
def run_evaluation(evaluation_id: str) -> str:
    state = execute_evaluation(context_from_settings(get_settings()), evaluation_id)
    return state.value


@app.task(name=BUILD_REPLAY_SET)
def build_replay_set(replay_set_id: str) -> str:
    state = execute_replay_set(context_from_settings(get_settings()), replay_set_id)
    return state.value
