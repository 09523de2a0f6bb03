"""Leases on running work, so that a dead worker never leaves a row `running` for ever.

The worker that claims a job (or an evaluation, or a replay-set build) holds a lease and renews
it while it works. A row whose lease expired lost its worker (killed, out of memory, machine
gone): a worker sweep re-queues it, and the next claim resumes it (a job from its last
checkpoint, the others from the start), until `max_attempts` runs have been spent; then it fails
with the reason. A redelivered task (Celery late acknowledgement) claims the same way, so a
duplicate delivery of work whose worker is alive does nothing.
"""

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import NotFoundError
from core.service.db import session_scope
from core.service.jobs import TERMINAL_STATES, WorkRow, WorkTable, transition, updated_rows
from core.service.models import Evaluation, Job, JobState, ReplaySet, new_id, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    owner: str
    attempt: int

    @property
    def resumed(self) -> bool:
        return self.attempt > 1


def leave_no_folder(state: JobState, folder: Path) -> JobState:
    """After a worker's run: an ended row's working folder goes, whatever the end (what matters
    is in storage and on the row); one still running was taken over by another worker, and one
    queued again is resumed from it, in the same folder. A run that a killed worker left behind
    is removed by the rerun (or the redelivery of an ended row) that ends it."""
    if state in TERMINAL_STATES:
        shutil.rmtree(folder, ignore_errors=True)
    return state


def work_noun(table: WorkTable) -> str:
    return {Job: "job", Evaluation: "evaluation", ReplaySet: "replay set"}[table]


def _lease_expired(table: WorkTable = Job) -> ColumnElement[bool]:
    # A running row without a lease was claimed by no live worker (migrations 0005, 0010).
    return or_(table.lease_expires_at.is_(None), table.lease_expires_at < utcnow())


def _fresh_row(session: Session, table: WorkTable, row_id: str) -> WorkRow | None:
    """The row as the database has it now (not the session's copy). `Session.get` cannot bind
    its type variable to a union of classes, so its result is narrowed here."""
    return cast(WorkRow | None, session.get(table, row_id, populate_existing=True))


def exhausted_reason(attempts: int, noun: str = "job") -> str:
    return (
        f"the worker running this {noun} stopped {attempts} time(s) before it ended (killed, out "
        "of memory or its machine lost); giving up after the last attempt (MLFT_MAX_ATTEMPTS)"
    )


def claim_job(
    session: Session, job_id: str, *, lease_seconds: float, max_attempts: int
) -> Claim | None:
    return claim(session, Job, job_id, lease_seconds=lease_seconds, max_attempts=max_attempts)


def claim(
    session: Session, table: WorkTable, row_id: str, *, lease_seconds: float, max_attempts: int
) -> Claim | None:
    """Take a queued row, or a running one whose worker is gone; None when there is nothing to
    do (another live worker holds it, it ended, or it just failed for too many attempts)."""
    row = _fresh_row(session, table, row_id)
    if row is None:
        raise NotFoundError(f"{work_noun(table)} {row_id} does not exist")
    if row.state is JobState.QUEUED:
        only_if = None
    elif row.state is JobState.RUNNING:
        only_if = _lease_expired(table)
    else:
        return None
    attempt = row.attempts + 1
    if attempt > max_attempts:
        transition(
            session,
            row_id,
            row.state,
            JobState.FAILED,
            table=table,
            only_if=only_if,
            error=exhausted_reason(row.attempts, work_noun(table)),
            stage=None,
            lease_owner=None,
        )
        return None
    owner = new_id()
    now = utcnow()
    lease: dict[str, Any] = {
        "attempts": attempt,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if row.started_at is not None and hasattr(table, "resumed_at"):
        # A resumption: started_at keeps the first start (wall times count from it).
        lease |= {"started_at": row.started_at, "resumed_at": now}
    if row.state is JobState.QUEUED:
        won = transition(session, row_id, JobState.QUEUED, JobState.RUNNING, table=table, **lease)
    else:
        result = session.execute(
            update(table)
            .where(table.id == row_id, table.state == JobState.RUNNING, _lease_expired(table))
            .values(updated_at=now, **lease)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        won = updated_rows(result) == 1
    if won:
        return Claim(owner, attempt)
    if row.state is JobState.RUNNING and _requeued_meanwhile(session, table, row_id):
        # The recovery sweep re-queued the row between the read and the update, and the message
        # it sent may be the one this worker consumed: take the row from queued, never strand it.
        return claim(session, table, row_id, lease_seconds=lease_seconds, max_attempts=max_attempts)
    return None


def _requeued_meanwhile(session: Session, table: WorkTable, row_id: str) -> bool:
    row = _fresh_row(session, table, row_id)
    return row is not None and row.state is JobState.QUEUED


def renew_lease(
    session: Session, job_id: str, owner: str, lease_seconds: float, table: WorkTable = Job
) -> bool:
    """False once the row is no longer this owner's: cancelled, ended, or taken over."""
    result = session.execute(
        update(table)
        .where(table.id == job_id, table.state == JobState.RUNNING, table.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return updated_rows(result) == 1


def recover_abandoned_jobs(
    session: Session, *, max_attempts: int, enqueue: Callable[[str], None]
) -> list[str]:
    return recover_abandoned(session, Job, max_attempts=max_attempts, enqueue=enqueue)


def recover_abandoned(
    session: Session, table: WorkTable, *, max_attempts: int, enqueue: Callable[[str], None]
) -> list[str]:
    """Re-queue running rows whose lease expired, failing those that used up their attempts;
    returns the ids re-queued."""
    noun = work_noun(table)
    abandoned = session.execute(
        select(table.id, table.attempts).where(
            table.state == JobState.RUNNING, _lease_expired(table)
        )
    ).all()
    requeued = []
    for row_id, attempts in abandoned:
        if attempts >= max_attempts:
            failed = transition(
                session,
                row_id,
                JobState.RUNNING,
                JobState.FAILED,
                table=table,
                only_if=_lease_expired(table),
                error=exhausted_reason(attempts, noun),
                stage=None,
                lease_owner=None,
            )
            if failed:
                logger.warning("%s=%s failed: its worker died %d time(s)", noun, row_id, attempts)
            continue
        # Enqueued first: a worker that takes the message before the row says queued finds
        # the expired lease and claims the row all the same; the reverse order could strand it.
        enqueue(row_id)
        if transition(
            session,
            row_id,
            JobState.RUNNING,
            JobState.QUEUED,
            table=table,
            only_if=_lease_expired(table),
            stage="requeued: its worker stopped",
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=utcnow(),
        ):
            logger.warning(
                "%s=%s re-queued: its worker stopped (attempt %d)", noun, row_id, attempts
            )
            requeued.append(row_id)
    return requeued


class LeaseKeeper:
    """Renews a row's lease in a background thread while the worker works on it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: str,
        claim: Claim,
        lease_seconds: float,
        table: WorkTable = Job,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.table = table
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
                    held = renew_lease(
                        session, self.job_id, self.claim.owner, self.lease_seconds, self.table
                    )
            except Exception:  # a database hiccup: try again before the lease runs out
                logger.exception("%s=%s lease renewal failed", work_noun(self.table), self.job_id)
                continue
            if not held:
                self.lost.set()
                return
