"""api/schemas.py: the response models read the rows, type what a client shows in the OpenAPI
document, and send each stored section back with the keys it was stored with."""

import pytest
from sqlalchemy import update

from api.schemas import JobPublic
from core.service.jobs import get_job
from core.service.models import Job
from tests.conftest import upload

# Stored as a job records them: a subset of each model's fields, and keys no field declares.
E0S = {"method": "estimated", "e0s": {"H": -13.6}, "fit_seconds": 0.5}
CHECKS = {"loss": 0.1, "frozen_weights_unchanged": {"unchanged": True}}
PREFLIGHT = {"n_configs": 3, "findings": [], "blocking": [], "probe": "kept"}


@pytest.mark.parametrize(
    ("model", "field", "component"),
    [
        ("DatasetPublic", "summary", "DatasetSummary"),
        ("JobPublic", "spec", "JobSpec"),
        ("JobPublic", "e0s", "E0sReport"),
        ("JobPublic", "checks", "JobChecks"),
        ("JobPublic", "preflight", "PreflightResult"),
        ("JobPublic", "epochs", "EpochReport"),
    ],
)
def test_the_openapi_document_types_what_a_client_shows(
    app, model: str, field: str, component: str
) -> None:
    schemas = app.openapi()["components"]["schemas"]

    shown = str(schemas[model]["properties"][field])

    assert f"#/components/schemas/{component}'" in shown
    assert schemas[component]["properties"]


def test_a_job_sends_its_sections_with_the_keys_they_were_stored_with(
    client, app, target_files
) -> None:
    train_id = upload(client, target_files["train"])["id"]
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    with app.state.context.sessions() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(e0s=E0S, checks=CHECKS, preflight=PREFLIGHT)
        )
        session.commit()
        stored_spec = get_job(session, job_id).spec

    shown = client.get(f"/jobs/{job_id}").json()
    client.post(f"/jobs/{job_id}/cancel")

    assert (shown["e0s"], shown["checks"], shown["preflight"]) == (E0S, CHECKS, PREFLIGHT)
    assert shown["spec"] == stored_spec


def test_a_job_row_reads_without_loading_its_deferred_parts(client, app, target_files) -> None:
    train_id = upload(client, target_files["train"])["id"]
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    with app.state.context.sessions() as session:
        job = get_job(session, job_id)

        public = JobPublic.of(job)

        unloaded = {"epochs", "split"} & set(job.__dict__)
    client.post(f"/jobs/{job_id}/cancel")
    assert (public.epochs, public.split, unloaded) == (None, None, set())
    assert public.progress.max_epochs == job.spec["hyperparameters"]["max_num_epochs"]
