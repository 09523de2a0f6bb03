"""A job's log lines travel through the database, bounded, and the whole log through storage."""

from datetime import timedelta

import pytest

from core.artifacts.storage import LocalStorage
from core.artifacts.storage_keys import MACE_LOG_NAME, mace_log_key
from core.config import Settings
from core.science.spec import JobSpec
from core.service.db import session_factory
from core.service.job_logs import (
    LOG_LINES_KEPT,
    LogShipper,
    append_lines,
    delete_ended_lines,
    lines_after,
)
from core.service.models import (
    DEFAULT_PROJECT_ID,
    Dataset,
    Job,
    JobState,
    Project,
    new_id,
    utcnow,
)
from tests.rows import dataset_summary


@pytest.fixture()
def sessions(database_url):
    return session_factory(database_url)


def test_only_the_last_lines_are_kept_and_numbered_without_gaps(sessions, tmp_path) -> None:
    job_id = new_id()
    log = tmp_path / MACE_LOG_NAME
    shipper = LogShipper(sessions, job_id, log)
    total = LOG_LINES_KEPT + 50
    log.write_text("".join(f"line {n}\n" for n in range(1, total + 1)) + "partial")

    shipper.ship()

    with sessions() as session:
        kept = lines_after(session, job_id, 0)
    assert [row.seq for row in kept] == list(range(51, total + 1))
    assert kept[-1].line == f"line {total}"


def test_a_resumed_run_continues_the_numbering_and_skips_what_the_last_run_shipped(
    sessions, tmp_path
) -> None:
    job_id = new_id()
    log = tmp_path / MACE_LOG_NAME
    first = LogShipper(sessions, job_id, log)
    log.write_text("first run\n")
    first.ship()
    second = LogShipper(sessions, job_id, log)  # same machine: the file is still there
    with log.open("a") as stream:
        stream.write("second run\n")

    second.ship()

    with sessions() as session:
        assert [(row.seq, row.line) for row in lines_after(session, job_id, 0)] == [
            (1, "first run"),
            (2, "second run"),
        ]


def test_the_whole_log_is_stored_as_an_artifact_at_the_end(sessions, tmp_path) -> None:
    job_id = new_id()
    log = tmp_path / "work" / MACE_LOG_NAME
    log.parent.mkdir()
    shipper = LogShipper(sessions, job_id, log)
    log.write_text("".join(f"line {n}\n" for n in range(LOG_LINES_KEPT * 2)))
    storage = LocalStorage(tmp_path / "artifacts")

    key = shipper.store(storage)

    assert key == mace_log_key(job_id)
    assert storage.local_path(key).read_text() == log.read_text()


def ended_job_with_lines(sessions, ended_ago: timedelta | None, lines: int = 3) -> str:
    """A job row (ended `ended_ago` before now, or still running) with log lines shipped."""
    with sessions() as session:
        project = session.get(Project, DEFAULT_PROJECT_ID) or Project(
            id=DEFAULT_PROJECT_ID, name=DEFAULT_PROJECT_ID
        )
        session.merge(project)
        dataset = Dataset(name="d", storage_key="-", sha256="0" * 64, summary=dataset_summary())
        session.add(dataset)
        session.flush()
        # A whole spec: other tests list the default project's jobs and read theirs.
        spec = JobSpec(train_dataset=dataset.id).model_dump(mode="json")
        job = Job(spec=spec, train_dataset_id=dataset.id, epochs=[], warnings=[])
        if ended_ago is not None:
            job.state, job.finished_at = JobState.CANCELLED, utcnow() - ended_ago
        else:
            job.state = JobState.RUNNING
        session.add(job)
        session.flush()
        append_lines(session, job.id, [f"line {n}" for n in range(lines)])
        session.commit()
        return job.id


def test_the_sweep_deletes_the_lines_of_work_that_ended_before_the_retention(
    sessions, database_url, tmp_path
) -> None:
    from worker.recovery import sweep_ended_log_lines

    long_ago = ended_job_with_lines(sessions, timedelta(days=2))
    just_now = ended_job_with_lines(sessions, timedelta(minutes=1))
    running = ended_job_with_lines(sessions, None)
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, log_lines_retention_seconds=3600
    )

    deleted = sweep_ended_log_lines(settings)

    with sessions() as session:
        kept = {job: len(lines_after(session, job, 0)) for job in (long_ago, just_now, running)}
    assert deleted >= 3
    assert kept == {long_ago: 0, just_now: 3, running: 3}


def test_no_retention_deletes_the_lines_of_all_ended_work_at_the_next_sweep(sessions) -> None:
    ended = ended_job_with_lines(sessions, timedelta(seconds=1))
    running = ended_job_with_lines(sessions, None)

    with sessions() as session:
        delete_ended_lines(session, timedelta(0))
        kept = {job: len(lines_after(session, job, 0)) for job in (ended, running)}

    assert kept == {ended: 0, running: 3}
