"""Job rows and their state machine: queued → running → succeeded | failed | cancelled.

Every transition is a compare-and-set on the current state, so two workers (or a worker and a
cancel request) can never both win.
"""

from collections.abc import Collection
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, Result, select, update
from sqlalchemy.orm import Session, undefer

from core.errors import InvalidStateTransitionError, NotFoundError
from core.service.listing import NO_FILTERS, ListFilters, Page, list_page
from core.service.models import Evaluation, Job, JobState, ReplaySet, utcnow

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.QUEUED,
            JobState.STOPPED_EARLY,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.STOPPED_EARLY: frozenset(),
}
Row = TypeVar("Row", Job, Evaluation, ReplaySet)
WorkTable = type[Job] | type[Evaluation] | type[ReplaySet]
WorkRow = Job | Evaluation | ReplaySet
TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.STOPPED_EARLY}
)


def create_job(
    session: Session,
    spec: dict[str, Any],
    train_dataset_id: str,
    *,
    warnings: list[str] | None = None,
    effective_hyperparameters: dict[str, Any] | None = None,
    replay_dataset_id: str | None = None,
    sweep_id: str | None = None,
) -> Job:
    job = Job(
        spec=spec,
        name=spec.get("name"),
        tags=spec.get("tags") or {},
        train_dataset_id=train_dataset_id,
        epochs=[],
        attempts=0,
        warnings=warnings or [],
        effective_hyperparameters=effective_hyperparameters,
        replay_dataset_id=replay_dataset_id,
        sweep_id=sweep_id,
    )
    session.add(job)
    session.flush()
    return job


# The parts of a job's row that grow with its run and data (the learning curve, the split's
# configuration positions): left out of a read unless named here (models.Job defers them).
JobPart = Literal["epochs", "split"]
JOB_PARTS: tuple[JobPart, ...] = ("epochs", "split")


def get_job(session: Session, job_id: str, *, include: Collection[JobPart] = ()) -> Job:
    job = session.get(Job, job_id, options=_loading(include))
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def list_jobs(
    session: Session,
    filters: ListFilters = NO_FILTERS,
    *,
    limit: int = 100,
    offset: int = 0,
    include: Collection[JobPart] = (),
) -> Page[Job]:
    """The jobs matching `filters`, newest first: one page and how many match."""
    query = select(Job).options(*_loading(include))
    return list_page(session, Job, filters, limit=limit, offset=offset, query=query)


def _loading(include: Collection[JobPart]) -> list:
    return [undefer(getattr(Job, part)) for part in JOB_PARTS if part in include]


def transition(
    session: Session,
    job_id: str,
    expected: JobState,
    target: JobState,
    *,
    table: WorkTable = Job,
    only_if: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """Move a job (or an evaluation, which shares the states) from `expected` to `target`;
    False when another actor changed it first."""
    if target not in ALLOWED_TRANSITIONS[expected]:
        raise InvalidStateTransitionError(
            f"{table.__tablename__[:-1]} {job_id}: {expected.value} → {target.value} is not allowed"
        )
    now = utcnow()
    if target is JobState.RUNNING:
        values.setdefault("started_at", now)
    if target in TERMINAL_STATES:
        values.setdefault("finished_at", now)
    conditions = [table.id == job_id, table.state == expected]
    if only_if is not None:
        conditions.append(only_if)
    result = session.execute(
        update(table)
        .where(*conditions)
        .values(state=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return updated_rows(result) == 1


def updated_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE matched. `Session.execute` is typed as returning a plain Result,
    but for a DML statement it is a CursorResult, which is what carries the count."""
    return cast(CursorResult[Any], result).rowcount


def cancel_job(session: Session, job_id: str) -> Job:
    return cancel(session, get_job(session, job_id))


def cancel(session: Session, row: Row) -> Row:
    """Cancel queued or running work; its worker notices at its next lease renewal or check."""
    noun = row.__tablename__[:-1].replace("_", " ")
    if row.state in TERMINAL_STATES:
        raise InvalidStateTransitionError(
            f"{noun} {row.id} is already {row.state.value} and cannot be cancelled"
        )
    if not transition(session, row.id, row.state, JobState.CANCELLED, table=type(row)):
        session.refresh(row)
        raise InvalidStateTransitionError(
            f"{noun} {row.id} changed to {row.state.value} while being cancelled"
        )
    session.refresh(row)
    return row


# Where each kind of work row keeps its progress inside a long stage (evaluations keep none).
PROGRESS_COLUMNS = {Job: "stage_progress", ReplaySet: "progress"}


def record_stage(
    session: Session,
    job_id: str,
    stage: str,
    *,
    progress: dict[str, Any] | None = None,
    table: WorkTable = Job,
) -> None:
    """What the job (or evaluation, or replay set) does now; `progress` (done of total) inside a
    long stage, cleared by the next stage."""
    values: dict[str, Any] = {"stage": stage, "updated_at": utcnow()}
    if table in PROGRESS_COLUMNS:
        values[PROGRESS_COLUMNS[table]] = progress
    session.execute(update(table).where(table.id == job_id).values(**values))
    session.commit()


def record_epoch(session: Session, job_id: str, entry: dict[str, Any]) -> bool:
    """Add one epoch's record to a job that has not ended; False (nothing written) once it has:
    a cancelled job's training process may still report the epoch it was in after finished_at.
    The row is locked (PostgreSQL) so that an end committed meanwhile is seen."""
    parts: tuple[JobPart, ...] = ("epochs",)
    job = session.get(
        Job, job_id, options=_loading(parts), with_for_update=True, populate_existing=True
    )
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if job.state in TERMINAL_STATES:
        session.rollback()
        return False
    job.epochs = [*job.epochs, entry]
    session.commit()
    return True


def add_warnings(session: Session, job_id: str, warnings: list[str]) -> None:
    if not warnings:
        return
    job = get_job(session, job_id)
    job.warnings = [*job.warnings, *warnings]
    session.commit()


def current_state(session: Session, job_id: str) -> JobState:
    state = session.scalar(select(Job.state).where(Job.id == job_id))
    if state is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return state
