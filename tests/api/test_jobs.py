import pytest

from core.service.models import JobState
from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def test_job_is_queued_readable_and_cancellable(client, train_id, demo_foundation) -> None:
    response = client.post("/jobs", json={"train_dataset": train_id})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "queued"
    assert job["spec"]["strategy"]["name"] == "naive"
    assert job["spec"]["e0s"] == "estimated"
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "queued"

    cancelled = client.post(f"/jobs/{job['id']}/cancel")
    again = client.post(f"/jobs/{job['id']}/cancel")

    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert again.status_code == 409
    assert client.get(f"/jobs/{job['id']}/model").status_code == 409


def test_unknown_train_dataset_is_rejected_naming_it(client) -> None:
    response = client.post("/jobs", json={"train_dataset": "nope"})
    assert response.status_code == 422
    assert "train_dataset nope does not exist" in response.json()["detail"]


def test_unknown_foundation_model_is_rejected(client, train_id) -> None:
    response = client.post(
        "/jobs", json={"train_dataset": train_id, "foundation_model": "not-a-model"}
    )
    assert response.status_code == 422
    assert "not-a-model" in response.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"e0s": "median"},
        {"e0s": {"Xx": 1.0}},
        {"strategy": {"name": "lora-ish"}},
        {"hyperparameters": {"lr": -1}},
        {"valid_fraction": 1.5},
        {"strategy": {"name": "scratch"}, "e0s": "foundation"},
    ],
)
def test_invalid_specs_get_422(client, train_id, change) -> None:
    response = client.post("/jobs", json={"train_dataset": train_id, **change})
    assert response.status_code == 422, response.text


def test_a_test_set_is_refused_only_with_elements_the_delivered_model_will_not_know(
    client, train_id, tmp_path
) -> None:
    # Issue 25: the fine-tuned model keeps its foundation's elements (Cu and Au among them) by
    # default; with elements='training' it knows the training data's H, C, N, O only.
    from core.data.demo_data import generate_target_dataset, write_extxyz

    cuau = write_extxyz(generate_target_dataset(3, seed=5, system="CuAu"), tmp_path / "cuau.extxyz")
    spec = {"train_dataset": train_id, "test_dataset": upload(client, cuau)["id"]}

    accepted = client.post("/jobs", json=spec)
    refused = client.post("/jobs", json={**spec, "elements": "training"})

    assert accepted.status_code == 201, accepted.text
    client.post(f"/jobs/{accepted.json()['id']}/cancel")
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "test_dataset holds element(s) Cu, Au" in detail
    assert "elements='foundation'" in detail


def test_foundation_models_are_listed(client, demo_foundation) -> None:
    names = {item["name"]: item for item in client.get("/foundation-models").json()}
    assert names["mace-demo-emt"]["available"] is True
    assert names["mace-mp-0-medium"]["source"] == "published"


def test_isolated_atom_e0s_without_isolated_atoms_are_refused(client, train_id) -> None:
    response = client.post("/jobs", json={"train_dataset": train_id, "e0s": "isolated_atoms"})
    assert response.status_code == 422
    assert "single-atom configuration" in response.json()["detail"]


def test_a_failed_jobs_working_folder_is_removed(client, app, train_id) -> None:
    from core.science.spec import JobSpec
    from core.workflows.runner import execute_job
    from core.workflows.submission import submit_job

    # The foundation's own E0s on shifted data: preflight blocks, so the job fails quickly,
    # after its inputs were fetched into its working folder. Submitted past the API's own
    # check of the same mismatch (as a dataset too large for it would be).
    context = app.state.context
    spec = JobSpec.model_validate({"train_dataset": train_id, "e0s": "foundation"})
    with context.sessions() as session:
        job = {"id": submit_job(session, spec, context.registry).id}

    state = execute_job(context, job["id"])

    assert state is JobState.FAILED
    assert "reference_mismatch" in client.get(f"/jobs/{job['id']}").json()["error"]
    assert not (context.work_root / job["id"]).exists()


def test_a_stored_spec_naming_a_foundation_by_path_fails_the_job_without_loading_it(
    client, app, train_id
) -> None:
    from sqlalchemy import update

    from core.service.models import Job
    from core.workflows.runner import execute_job

    job = client.post("/jobs", json={"train_dataset": train_id}).json()
    context = app.state.context
    # A row accepted before names were checked, as issue 17's attacker left one.
    with context.sessions() as session:
        spec = {**job["spec"], "foundation_model": "../artifacts/jobs/x/model"}
        session.execute(update(Job).where(Job.id == job["id"]).values(spec=spec))
        session.commit()

    assert execute_job(context, job["id"]) is JobState.FAILED
    assert "not a registry name" in client.get(f"/jobs/{job['id']}").json()["error"]
