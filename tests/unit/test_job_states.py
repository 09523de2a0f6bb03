"""The job state machine against the real database: compare-and-set transitions."""

import pytest

from core.errors import InvalidStateTransitionError
from core.service.db import session_factory
from core.service.jobs import cancel_job, create_job, get_job, transition
from core.service.models import Dataset, JobState, new_id
from tests.rows import dataset_summary


@pytest.fixture()
def session(database_url):
    with session_factory(database_url)() as session:
        yield session


@pytest.fixture()
def job_id(session) -> str:
    dataset = Dataset(
        id=new_id(), name="d", storage_key="k", sha256="0" * 64, summary=dataset_summary()
    )
    session.add(dataset)
    session.flush()
    job = create_job(session, {"hyperparameters": {"max_num_epochs": 1}}, dataset.id)
    session.commit()
    return job.id


def test_only_one_of_two_racing_transitions_wins(session, job_id) -> None:
    first = transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
    second = transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
    assert (first, second) == (True, False)
    session.expire_all()
    job = get_job(session, job_id)
    assert job.state is JobState.RUNNING
    assert job.started_at is not None


def test_terminal_states_cannot_be_left(session, job_id) -> None:
    transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
    transition(session, job_id, JobState.RUNNING, JobState.SUCCEEDED)
    with pytest.raises(InvalidStateTransitionError):
        transition(session, job_id, JobState.SUCCEEDED, JobState.RUNNING)
    with pytest.raises(InvalidStateTransitionError, match="already succeeded"):
        cancel_job(session, job_id)


def test_cancelling_a_running_job_records_when_it_ended(session, job_id) -> None:
    transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
    job = cancel_job(session, job_id)
    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None
