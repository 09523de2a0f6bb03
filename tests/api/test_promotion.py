"""POST /jobs/{id}/promote refusals (issue 28): each a typed error with its code and param."""

import pytest

from core.artifacts.storage_keys import model_key
from core.errors import InvalidSpecError
from core.registry.catalogue import DEMO_FOUNDATION_NAME
from core.service.auth import Principal
from core.service.jobs import transition
from core.service.models import JobState
from core.workflows.promotion import require_promotion_name
from tests.conftest import upload


@pytest.fixture()
def failed_job(app, client, target_files) -> str:
    train_id = upload(client, target_files["train"])["id"]
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    with app.state.context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
        transition(session, job_id, JobState.RUNNING, JobState.FAILED)
    return job_id


def test_promoting_an_unknown_job_is_404(client) -> None:
    response = client.post("/jobs/0123456789abcdef/promote", json={"name": "cu-round-x"})

    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_promoting_a_failed_job_is_409_and_registers_nothing(client, failed_job) -> None:
    response = client.post(f"/jobs/{failed_job}/promote", json={"name": "from-a-failed-job"})

    assert (response.status_code, response.json()["code"]) == (409, "invalid_state")
    assert "failed" in response.json()["detail"]
    assert client.get("/foundation-models/from-a-failed-job").status_code == 404


def test_a_name_that_is_not_a_registry_name_is_422_naming_the_field(client, failed_job) -> None:
    response = client.post(f"/jobs/{failed_job}/promote", json={"name": "../etc/passwd"})

    assert response.status_code == 422
    assert (response.json()["code"], response.json()["param"]) == ("invalid_spec", "name")


def test_a_taken_name_is_409_conflict_naming_the_field(
    app, client, target_files, demo_foundation
) -> None:
    train_id = upload(client, target_files["train"])["id"]
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    # A succeeded job as the worker records it, with a real MACE model as its delivery.
    app.state.context.storage.put_file(model_key(job_id), demo_foundation)
    with app.state.context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
        transition(
            session, job_id, JobState.RUNNING, JobState.SUCCEEDED, model_key=model_key(job_id)
        )

    response = client.post(f"/jobs/{job_id}/promote", json={"name": DEMO_FOUNDATION_NAME})

    assert response.status_code == 409
    assert (response.json()["code"], response.json()["param"]) == ("conflict", "name")


def test_a_project_token_promotes_only_into_its_own_namespace() -> None:
    project = Principal(project_id="lab7", admin=False)

    assert require_promotion_name("lab7.cu-round-1", project) == "lab7.cu-round-1"
    with pytest.raises(InvalidSpecError, match="lab7.cu-round-1") as raised:
        require_promotion_name("cu-round-1", project)
    assert raised.value.param == "name"
    admin = Principal(project_id=None, admin=True)
    assert require_promotion_name("cu-round-1", admin) == "cu-round-1"


def test_reading_an_unknown_foundation_model_is_404(client) -> None:
    response = client.get("/foundation-models/no-such-model")

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
