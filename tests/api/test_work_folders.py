"""Issue 17 item 11: the working folders of evaluations and replay-set builds go once the row
ends, failed or cancelled as well as succeeded, as jobs' do; a rerun after a killed worker
removes what that worker left. (A sweep has no folder of its own: its points are jobs.)
Issue 26 item 5: one lifecycle (core.workflows.work.execute) does it for all three kinds."""

from pathlib import Path

import pytest
from sqlalchemy import update

from core.service.leases import leave_no_folder
from core.service.models import Evaluation, Job, JobState, ReplaySet
from core.workflows.evaluations import execute_evaluation
from core.workflows.evaluations import work_folder as evaluation_folder
from core.workflows.replay_sets import execute_replay_set
from core.workflows.replay_sets import work_folder as replay_set_folder
from core.workflows.runner import execute_job
from core.workflows.work import work_folder
from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def left_by_a_killed_worker(folder: Path) -> Path:
    (folder / "foundation").mkdir(parents=True, exist_ok=True)
    (folder / "foundation" / "partial.model").write_bytes(b"half written")
    return folder


def spec_changed(app, table, row_id: str, **changes) -> None:
    """A row whose spec makes its run fail at once (its inputs are tested elsewhere)."""
    with app.state.context.sessions() as session:
        row = session.get(table, row_id)
        spec = {**row.spec, **changes}
        session.execute(update(table).where(table.id == row_id).values(spec=spec))
        session.commit()


def test_a_failed_evaluation_leaves_no_working_folder(client, app, train_id) -> None:
    created = client.post(
        "/evaluations", json={"model": {"foundation_model": "mace-demo-emt"}, "dataset": train_id}
    ).json()
    spec_changed(app, Evaluation, created["id"], model={"job": "0" * 32})
    folder = left_by_a_killed_worker(evaluation_folder(app.state.context, created["id"]))

    state = execute_evaluation(app.state.context, created["id"])

    assert state is JobState.FAILED
    assert "does not exist" in client.get(f"/evaluations/{created['id']}").json()["error"]
    assert not folder.exists()


def test_a_cancelled_evaluation_leaves_no_working_folder(client, app, train_id) -> None:
    created = client.post(
        "/evaluations", json={"model": {"foundation_model": "mace-demo-emt"}, "dataset": train_id}
    ).json()
    folder = left_by_a_killed_worker(evaluation_folder(app.state.context, created["id"]))
    assert client.post(f"/evaluations/{created['id']}/cancel").status_code == 200

    assert execute_evaluation(app.state.context, created["id"]) is JobState.CANCELLED
    assert not folder.exists()


def test_a_failed_replay_set_build_leaves_no_working_folder(client, app, train_id) -> None:
    created = client.post(
        "/replay-sets", json={"train_dataset": train_id, "size": 7, "seed": 1701}
    ).json()
    spec_changed(app, ReplaySet, created["id"], foundation_model="no-such-foundation")
    folder = left_by_a_killed_worker(replay_set_folder(app.state.context, created["id"]))

    state = execute_replay_set(app.state.context, created["id"])

    assert state is JobState.FAILED
    assert not folder.exists()


def test_a_cancelled_replay_set_build_leaves_no_working_folder(client, app, train_id) -> None:
    created = client.post(
        "/replay-sets", json={"train_dataset": train_id, "size": 7, "seed": 1702}
    ).json()
    folder = left_by_a_killed_worker(replay_set_folder(app.state.context, created["id"]))
    assert client.post(f"/replay-sets/{created['id']}/cancel").status_code == 200

    assert execute_replay_set(app.state.context, created["id"]) is JobState.CANCELLED
    assert not folder.exists()


def test_a_folder_of_work_another_worker_took_over_stays(tmp_path) -> None:
    folder = left_by_a_killed_worker(tmp_path / "evaluation-x")

    assert leave_no_folder(JobState.RUNNING, folder) is JobState.RUNNING
    assert folder.exists()
    assert leave_no_folder(JobState.SUCCEEDED, folder) is JobState.SUCCEEDED
    assert not folder.exists()


def test_a_job_cancelled_after_its_worker_was_killed_leaves_no_working_folder(
    client, app, train_id
) -> None:
    created = client.post("/jobs", json={"train_dataset": train_id}).json()
    folder = left_by_a_killed_worker(work_folder(app.state.context, Job, created["id"]))
    assert client.post(f"/jobs/{created['id']}/cancel").status_code == 200

    # The task's redelivery finds the job ended: nothing to claim, and its folder goes.
    assert execute_job(app.state.context, created["id"]) is JobState.CANCELLED
    assert not folder.exists()


def test_a_queued_row_keeps_its_folder_for_the_run_that_resumes_it(tmp_path) -> None:
    folder = left_by_a_killed_worker(tmp_path / "job-x")

    assert leave_no_folder(JobState.QUEUED, folder) is JobState.QUEUED
    assert folder.exists()
