"""Leases on running jobs against the real database: a job is never stuck in `running` after its
worker died, and a duplicate delivery never runs a job twice."""

import time
from datetime import timedelta

import pytest
import torch
from sqlalchemy import update

from core.artifacts.storage import LocalStorage
from core.service.db import session_factory
from core.service.jobs import create_job, get_job
from core.service.leases import LeaseKeeper, claim_job, recover_abandoned_jobs
from core.service.models import Dataset, Evaluation, Job, JobState, ReplaySet, new_id, utcnow
from core.workflows.checkpoints import (
    CheckpointSync,
    checkpoint_epoch,
    newest_checkpoint,
    prepare_resume,
)
from tests.rows import dataset_summary

LEASE = {"lease_seconds": 60.0, "max_attempts": 2}


@pytest.fixture()
def sessions(database_url):
    return session_factory(database_url)


@pytest.fixture()
def session(sessions):
    with sessions() as session:
        yield session


@pytest.fixture()
def job_id(session) -> str:
    dataset = Dataset(
        id=new_id(), name="d", storage_key="k", sha256="0" * 64, summary=dataset_summary()
    )
    session.add(dataset)
    session.flush()
    job = create_job(session, {"hyperparameters": {"max_num_epochs": 4}}, dataset.id)
    session.commit()
    return job.id


def expire_lease(session, job_id: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()


def reread(session, job_id: str) -> Job:
    session.expire_all()
    return get_job(session, job_id)


def test_a_claim_holds_the_job_and_a_duplicate_delivery_does_nothing(session, job_id) -> None:
    first = claim_job(session, job_id, **LEASE)
    duplicate = claim_job(session, job_id, **LEASE)

    assert first is not None and first.attempt == 1 and not first.resumed
    assert duplicate is None
    job = reread(session, job_id)
    assert job.state is JobState.RUNNING
    assert job.lease_owner == first.owner
    assert job.attempts == 1


def test_a_running_job_whose_lease_expired_is_taken_over_as_a_resumed_attempt(
    session, job_id
) -> None:
    first = claim_job(session, job_id, **LEASE)
    expire_lease(session, job_id)

    second = claim_job(session, job_id, **LEASE)

    assert second is not None and second.resumed and second.attempt == 2
    assert second.owner != first.owner
    assert reread(session, job_id).lease_owner == second.owner


def test_the_sweep_requeues_an_abandoned_job_and_then_fails_it_after_its_attempts(
    session, job_id
) -> None:
    enqueued: list[str] = []
    claim_job(session, job_id, **LEASE)
    expire_lease(session, job_id)

    assert job_id in recover_abandoned_jobs(session, max_attempts=2, enqueue=enqueued.append)
    assert job_id in enqueued
    assert reread(session, job_id).state is JobState.QUEUED

    claim_job(session, job_id, **LEASE)
    expire_lease(session, job_id)
    assert job_id not in recover_abandoned_jobs(session, max_attempts=2, enqueue=enqueued.append)

    job = reread(session, job_id)
    assert job.state is JobState.FAILED
    assert "stopped 2 time(s)" in job.error
    assert job.finished_at is not None


def test_a_resumed_job_keeps_its_first_start_and_records_the_resumption(session, job_id) -> None:
    three_runs = {**LEASE, "max_attempts": 3}
    claim_job(session, job_id, **three_runs)
    first_start = reread(session, job_id).started_at
    expire_lease(session, job_id)
    recover_abandoned_jobs(session, max_attempts=3, enqueue=lambda _id: None)
    assert reread(session, job_id).state is JobState.QUEUED
    time.sleep(0.01)

    claim_job(session, job_id, **three_runs)

    job = reread(session, job_id)
    assert job.started_at == first_start
    assert job.resumed_at is not None and job.resumed_at > first_start
    first_resumption = job.resumed_at
    # Taken over straight from `running` (a redelivered task) counts as a resumption too.
    expire_lease(session, job_id)
    claim_job(session, job_id, **three_runs)
    again = reread(session, job_id)
    assert again.started_at == first_start and again.resumed_at > first_resumption


def test_a_live_lease_is_left_alone_by_the_sweep(session, job_id) -> None:
    claim_job(session, job_id, **LEASE)

    requeued = recover_abandoned_jobs(session, max_attempts=2, enqueue=lambda _id: None)

    assert job_id not in requeued
    assert reread(session, job_id).state is JobState.RUNNING


def test_a_redelivered_job_beyond_its_attempts_fails_with_the_reason(session, job_id) -> None:
    claim_job(session, job_id, **LEASE)
    expire_lease(session, job_id)
    claim_job(session, job_id, **LEASE)
    expire_lease(session, job_id)

    assert claim_job(session, job_id, **LEASE) is None

    job = reread(session, job_id)
    assert job.state is JobState.FAILED
    assert "giving up" in job.error


def test_the_keeper_renews_the_lease_and_notices_a_cancellation(sessions, session, job_id):
    claim = claim_job(session, job_id, lease_seconds=0.3, max_attempts=2)
    assert claim is not None
    with LeaseKeeper(sessions, job_id, claim, lease_seconds=0.3) as keeper:
        time.sleep(0.5)
        assert not keeper.lost.is_set()
        assert claim_job(session, job_id, lease_seconds=0.3, max_attempts=2) is None
        session.execute(update(Job).where(Job.id == job_id).values(state=JobState.CANCELLED))
        session.commit()
        assert keeper.lost.wait(timeout=2)


def test_resuming_restores_the_stored_checkpoint_and_keeps_only_epochs_before_it(
    sessions, session, job_id, tmp_path
) -> None:
    storage = LocalStorage(tmp_path / "store")
    job = get_job(session, job_id)
    job.epochs = [{"epoch": None}, {"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    session.commit()
    machine_a = tmp_path / "a" / "checkpoints"
    machine_a.mkdir(parents=True)
    checkpoint = machine_a / "mlft_run-123_epoch-1.pt"
    checkpoint.write_bytes(b"half a checkpoint")
    sync = CheckpointSync(storage, job_id, machine_a)
    assert not sync.push()  # not a complete torch (zip) file yet
    torch.save({"weights": torch.arange(3)}, checkpoint)
    assert sync.push()
    assert not sync.push()  # already stored

    start = prepare_resume(sessions, storage, job_id, tmp_path / "b", attempt=2)

    restored = newest_checkpoint(tmp_path / "b" / "checkpoints")
    assert restored is not None and checkpoint_epoch(restored) == 1
    assert torch.load(restored)["weights"].tolist() == [0, 1, 2]
    assert start == 1
    job = reread(session, job_id)
    assert [entry["epoch"] for entry in job.epochs] == [None, 0]
    assert "resumed from its checkpoint of epoch 1" in job.warnings[-1]


@pytest.mark.parametrize("table", [Evaluation, ReplaySet])
def test_evaluations_and_replay_sets_are_leased_requeued_and_failed_like_jobs(
    session, table
) -> None:
    from core.service.leases import claim, recover_abandoned

    values = {"content_hash": "0" * 64} if table is ReplaySet else {}
    row = table(spec={}, **values)
    session.add(row)
    session.commit()
    held = claim(session, table, row.id, **LEASE)
    assert held is not None and claim(session, table, row.id, **LEASE) is None
    enqueued: list[str] = []

    session.execute(
        update(table).where(table.id == row.id).values(lease_expires_at=utcnow() - timedelta(1))
    )
    session.commit()
    assert recover_abandoned(session, table, max_attempts=2, enqueue=enqueued.append) == [row.id]
    assert enqueued == [row.id]
    resumed = claim(session, table, row.id, **LEASE)
    assert resumed is not None and resumed.attempt == 2
    session.execute(
        update(table).where(table.id == row.id).values(lease_expires_at=utcnow() - timedelta(1))
    )
    session.commit()
    assert recover_abandoned(session, table, max_attempts=2, enqueue=enqueued.append) == []

    session.expire_all()
    failed = session.get(table, row.id)
    noun = "evaluation" if table is Evaluation else "replay set"
    assert failed.state is JobState.FAILED
    assert f"the worker running this {noun} stopped 2 time(s)" in failed.error
