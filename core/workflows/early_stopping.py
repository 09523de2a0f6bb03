"""A sweep's successive halving as its jobs run (issue 27 item 4): which rungs a job stops at,
and the verdict at each, from the learning curves its sibling jobs recorded.

The rule is core.science.halving's; mace waits at each rung for the verdict
(core.science.mace_process.RungPlan), so a job never trains past a rung it lost.
"""

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.science.halving import (
    RULE,
    Verdict,
    early_stopping_applies,
    judge,
    rung_epochs,
    value_after,
)
from core.science.mace_process import RungPlan
from core.science.spec import JobSpec
from core.service.db import session_scope
from core.service.jobs import get_job
from core.service.models import Job, JobState, Sweep

logger = logging.getLogger(__name__)

RUNG_FOLDER = "rungs"


def rung_plan(
    sessions: sessionmaker[Session], job_id: str, spec: JobSpec, work_dir: Path
) -> RungPlan | None:
    """The rungs of a job of a sweep that stops losers early; None for other jobs."""
    with session_scope(sessions) as session:
        sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
        if sweep_id is None:
            return None
        sweep = session.get(Sweep, sweep_id)
        n_jobs = session.scalar(select(func.count()).where(Job.sweep_id == sweep_id)) or 0
        setting = (sweep.spec if sweep else {}).get("early_stopping")
    epochs = rung_epochs(spec.hyperparameters.max_num_epochs)
    if not early_stopping_applies(setting, n_jobs) or not epochs:
        return None
    return RungPlan(work_dir / RUNG_FOLDER, tuple(epochs))


def judge_rung(
    sessions: sessionmaker[Session], job_id: str, plan: RungPlan, entry: dict[str, Any]
) -> Verdict | None:
    """At a rung's validation record: judge the job against its siblings at that rung, give mace
    the verdict and keep it on the job's row. Other records pass through (None)."""
    if entry.get("epoch") is None or entry.get("head") == "replay":
        return None
    after = entry["epoch"] + 1
    if after not in plan.after_epochs:
        return None
    own = value_after([entry], after)
    if own is None:  # no force error (energy-only data): nothing to rank on, train on
        plan.give_verdict(after, stop=False)
        return None
    with session_scope(sessions) as session:
        sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
        curves = session.scalars(
            select(Job.epochs).where(Job.sweep_id == sweep_id, Job.id != job_id)
        ).all()
        others = [v for curve in curves if (v := value_after(curve or [], after)) is not None]
        verdict = judge(after, own, others)
        job = get_job(session, job_id)
        job.halving = [*(job.halving or []), {**verdict.to_dict(), "rule": RULE}]
    plan.give_verdict(after, verdict.stop)
    logger.info("job=%s rung after %d epochs: %s", job_id, after, verdict.reason)
    return verdict


def stopped_jobs(jobs: list[Job]) -> dict[str, Any]:
    """The sweep report's account of its early stopping: the rule and each stopped job."""
    stopped = []
    for job in jobs:
        if job.state is not JobState.STOPPED_EARLY:
            continue
        last = (job.halving or [{}])[-1]
        stopped.append(
            {
                "job_id": job.id,
                "strategy": job.spec["strategy"]["name"],
                "after_epochs": last.get("after_epochs"),
                "reason": last.get("reason"),
            }
        )
    judged = any(job.halving for job in jobs)
    return {"rule": RULE if judged else None, "stopped": stopped}
