"""One lifecycle for every kind of work a worker runs (jobs, evaluations, replay-set builds):
claim the row (start), renew its lease while the work runs (heartbeat), then end it: succeeded,
failed with a reason a researcher can act on, or left as another actor set it (cancelled, or
taken over by another worker after a lease expiry)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.errors import MlftError, NotFoundError
from core.service.db import session_scope
from core.service.jobs import TERMINAL_STATES, WorkTable, record_stage, transition
from core.service.leases import Claim, LeaseKeeper, claim, leave_no_folder, work_noun
from core.service.models import Evaluation, Job, JobState, ReplaySet
from core.service.stages import WorkStopped
from core.workflows.context import JobContext
from core.workflows.disk_space import disk_full_error

logger = logging.getLogger(__name__)


def log_key(table: WorkTable) -> str:
    """How logs name a row of `table`: job=…, evaluation=…, replay_set=…."""
    return work_noun(table).replace(" ", "_")


@dataclass(frozen=True)
class Work:
    """A claimed row while its worker works on it."""

    context: JobContext
    table: WorkTable
    row_id: str
    claim: Claim
    lease: LeaseKeeper

    def stopped(self) -> bool:
        """The lease was lost: the row was cancelled, or taken over after a lease expiry."""
        return self.lease.lost.is_set()

    def stage(self, name: str, progress: dict[str, Any] | None = None) -> None:
        """Record what the work does now; between stages is where stopped work stops."""
        if self.stopped():
            raise WorkStopped(name)
        with session_scope(self.context.sessions) as session:
            record_stage(session, self.row_id, name, progress=progress, table=self.table)

    def succeed(self, **values: Any) -> bool:
        """False when another actor ended (or took over) the row first."""
        return end(self.context, self.table, self.row_id, JobState.SUCCEEDED, **values)


Body = Callable[[Work], None]
FailureDetails = Callable[[MlftError], dict[str, Any]]


def claim_work(context: JobContext, table: WorkTable, row_id: str) -> Claim | None:
    with session_scope(context.sessions) as session:
        return claim(
            session,
            table,
            row_id,
            lease_seconds=context.lease_seconds,
            max_attempts=context.max_attempts,
        )


# Where each kind of work keeps its files on the worker's machine: a fixed folder per row (not a
# temporary one), so that a rerun after a killed worker finds what that worker left.
FOLDER_PREFIXES: dict[WorkTable, str] = {
    Job: "",
    Evaluation: "evaluation-",
    ReplaySet: "replay-set-",
}


def work_folder(context: JobContext, table: WorkTable, row_id: str) -> Path:
    return context.work_root / f"{FOLDER_PREFIXES[table]}{row_id}"


def execute(
    context: JobContext,
    table: WorkTable,
    row_id: str,
    body: Body,
    failure_details: FailureDetails = lambda _: {},
    *,
    ended: Callable[[], None] = lambda: None,
) -> JobState:
    """Run a queued row, or rerun one whose worker died; idempotent otherwise. Once the row has
    ended, `ended` runs (after a run of this worker's only) and the row's working folder goes,
    whoever ended it: jobs, evaluations and replay-set builds alike."""
    claimed = claim_work(context, table, row_id)
    if claimed is None:
        state = state_of(context, table, row_id)
    else:
        state = run_claimed(context, table, row_id, claimed, body, failure_details)
        if state in TERMINAL_STATES:
            ended()
    return leave_no_folder(state, work_folder(context, table, row_id))


def run_claimed(
    context: JobContext,
    table: WorkTable,
    row_id: str,
    claimed: Claim,
    body: Body,
    failure_details: FailureDetails = lambda _: {},
) -> JobState:
    """Run `body` while the row's lease is renewed, and end the row by what happened: `body`
    itself marks it succeeded; a full disk fails it naming the disk, whatever raised; an
    MlftError fails it with its message (and the details `failure_details` takes from the
    error), any other error as an internal one; stopped work leaves the row as whoever stopped
    it set it. Returns the row's state after."""
    key = log_key(table)
    if claimed.resumed:
        logger.warning("%s=%s resumed: attempt %d", key, row_id, claimed.attempt)
    try:
        with LeaseKeeper(context.sessions, row_id, claimed, context.lease_seconds, table) as lease:
            body(Work(context, table, row_id, claimed, lease))
    except WorkStopped:
        state = state_of(context, table, row_id)
        logger.info("%s=%s stopped: it is %s", key, row_id, state.value)
        return state
    except Exception as error:
        full = disk_full_error(work_folder(context, table, row_id), error)
        if full is not None:
            fail(context, table, row_id, str(full))
        elif isinstance(error, MlftError):
            fail(context, table, row_id, str(error), **failure_details(error))
        else:
            logger.exception("%s=%s failed unexpectedly", key, row_id)
            fail(context, table, row_id, f"internal error: {type(error).__name__}: {error}")
    return state_of(context, table, row_id)


def fail(context: JobContext, table: WorkTable, row_id: str, reason: str, **values: Any) -> bool:
    logger.warning("%s=%s failed: %s", log_key(table), row_id, reason)
    return end(context, table, row_id, JobState.FAILED, error=reason, **values)


def end(context: JobContext, table: WorkTable, row_id: str, state: JobState, **values: Any) -> bool:
    """Move the running row to `state`; False when another actor changed it first."""
    cleared: dict[str, Any] = {"stage": None, "lease_owner": None}
    if table is Job:
        cleared["stage_progress"] = None
    with session_scope(context.sessions) as session:
        won = transition(
            session, row_id, JobState.RUNNING, state, table=table, **(cleared | values)
        )
    if won:
        logger.info("%s=%s ended %s", log_key(table), row_id, state.value)
    return won


def state_of(context: JobContext, table: WorkTable, row_id: str) -> JobState:
    with session_scope(context.sessions) as session:
        state = session.scalar(select(table.state).where(table.id == row_id))
    if state is None:
        raise NotFoundError(f"{work_noun(table)} {row_id} does not exist")
    return state
