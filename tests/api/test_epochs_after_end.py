"""Issue 26 item 5: a job that ended takes no more epoch records; a cancelled job's training
process reporting the epoch it was in must not write the learning curve after finished_at."""

import pytest

from core.service.jobs import cancel_job, get_job, record_epoch
from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def test_a_cancelled_job_records_no_epoch_after_it_ended(client, app, train_id) -> None:
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    with app.state.context.sessions() as session:
        assert record_epoch(session, job_id, {"epoch": 0, "head": "target"}) is True
        cancel_job(session, job_id)

    with app.state.context.sessions() as session:
        written = record_epoch(session, job_id, {"epoch": 1, "head": "target"})
        job = get_job(session, job_id, include=("epochs",))

    assert written is False
    assert [entry["epoch"] for entry in job.epochs] == [0]
    assert job.epochs_done == 1
    assert job.finished_at is not None
