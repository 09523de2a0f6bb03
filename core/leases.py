"""Leases on running jobs, so that a dead worker never leaves a job `running` for ever.

The worker that claims a job holds a lease and renews it while it works. A job whose lease
expired lost its worker (killed, out of memory, machine gone): a worker sweep re-queues it, and
the next claim resumes it from its last checkpoint, until `max_attempts` runs have been spent;
then it fails with the reason. A redelivered task (Celery late acknowledgement) claims the same
way, so a duplicate delivery of a job whose worker is alive does nothing.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.jobs import get_job, transition
from core.models import Job, JobState, new_id, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    owner: str
    attempt: int

    @property
    def resumed(self) -> bool:
        return self.attempt > 1


def _lease_expired() -> ColumnElement[bool]:
    # A running job without a lease was claimed by no live worker (see migration 0005).
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < utcnow())


def exhausted_reason(attempts: int) -> str:
    return (
        f"the worker running this job stopped {attempts} time(s) before it ended (killed, out of "
        "memory or its machine lost); giving up after the last attempt (MLFT_MAX_ATTEMPTS)"
    )


def claim_job(
    session: Session, job_id: str, *, lease_seconds: float, max_attempts: int
) -> Claim | None:
    """Take a queued job, or a running one whose worker is gone; None when there is nothing to
    do (another live worker holds it, it ended, or it just failed for too many attempts)."""
    job = get_job(session, job_id)
    if job.state is JobState.QUEUED:
        only_if = None
    elif job.state is JobState.RUNNING:
        only_if = _lease_expired()
    else:
        return None
    attempt = job.attempts + 1
    if attempt > max_attempts:
        transition(
            session,
            job_id,
            job.state,
            JobState.FAILED,
            only_if=only_if,
            error=exhausted_reason(job.attempts),
            stage=None,
            lease_owner=None,
        )
        return None
    owner = new_id()
    now = utcnow()
    lease: dict[str, object] = {
        "attempts": attempt,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if job.started_at is not None:
        # A resumption: started_at keeps the first start (wall times count from it).
        lease |= {"started_at": job.started_at, "resumed_at": now}
    if job.state is JobState.QUEUED:
        won = transition(session, job_id, JobState.QUEUED, JobState.RUNNING, **lease)
    else:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING, _lease_expired())
            .values(updated_at=now, **lease)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        won = result.rowcount == 1
    return Claim(owner, attempt) if won else None


def renew_lease(session: Session, job_id: str, owner: str, lease_seconds: float) -> bool:
    """False once the job is no longer this owner's: cancelled, ended, or taken over."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def recover_abandoned_jobs(
    session: Session, *, max_attempts: int, enqueue: Callable[[str], None]
) -> list[str]:
    """Re-queue running jobs whose lease expired, failing those that used up their attempts;
    returns the ids re-queued."""
    abandoned = session.execute(
        select(Job.id, Job.attempts).where(
            Job.state == JobState.RUNNING, Job.lease_expires_at < utcnow()
        )
    ).all()
    requeued = []
    for job_id, attempts in abandoned:
        if attempts >= max_attempts:
            failed = transition(
                session,
                job_id,
                JobState.RUNNING,
                JobState.FAILED,
                only_if=_lease_expired(),
                error=exhausted_reason(attempts),
                stage=None,
                lease_owner=None,
            )
            if failed:
                logger.warning("job=%s failed: its worker died %d time(s)", job_id, attempts)
            continue
        # Enqueued first: a worker that takes the message before the row says queued finds
        # the expired lease and claims the job all the same; the reverse order could strand it.
        enqueue(job_id)
        if transition(
            session,
            job_id,
            JobState.RUNNING,
            JobState.QUEUED,
            only_if=_lease_expired(),
            stage="requeued: its worker stopped",
            lease_owner=None,
            lease_expires_at=None,
        ):
            logger.warning("job=%s re-queued: its worker stopped (attempt %d)", job_id, attempts)
            requeued.append(job_id)
    return requeued


class LeaseKeeper:
    """Renews a job's lease in a background thread while the worker works on it."""

    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, claim: Claim, lease_seconds: float
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                with session_scope(self.sessions) as session:
                    held = renew_lease(session, self.job_id, self.claim.owner, self.lease_seconds)
            except Exception:  # a database hiccup: try again before the lease runs out
                logger.exception("job=%s lease renewal failed", self.job_id)
                continue
            if not held:
                self.lost.set()
                return
