"""Chained fine-tunes (issue 28): a succeeded job's model is promoted to a foundation, its job's
files are deleted, and a second job fine-tunes from the promoted model on a real worker; its
model card carries the lineage."""

import uuid

import pytest

from core.data.demo_data import generate_target_dataset, write_extxyz
from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


def small_job(train_id: str, **extra: object) -> dict:
    return {
        "train_dataset": train_id,
        "valid_fraction": 0.25,
        "hyperparameters": {"max_num_epochs": 1, "batch_size": 4},
        "evaluation": {"md": False, "dimers": False},
        **extra,
    }


def test_a_promoted_job_model_is_fine_tuned_again_with_its_lineage_in_the_card(
    app, client, worker, settings, tmp_path
) -> None:
    cells = generate_target_dataset(8, seed=41, system="molecules")
    train_id = upload(client, write_extxyz(cells, tmp_path / "train.extxyz"))["id"]
    log = settings.data_dir / "worker.log"
    first = wait_for_job(client, client.post("/jobs", json=small_job(train_id)).json()["id"], log)
    assert first["state"] == "succeeded", first["error"]
    name = f"cu-round-{uuid.uuid4().hex[:8]}"

    promoted = client.post(f"/jobs/{first['id']}/promote", json={"name": name})

    assert promoted.status_code == 201, promoted.text
    shown = client.get(f"/foundation-models/{name}").json()
    assert shown["sha256"] == promoted.json()["sha256"]
    assert shown["registered_as"] == "promoted"
    lineage = shown["lineage"]
    assert lineage["job_id"] == first["id"]
    assert lineage["parent_foundation"]["name"] == first["spec"]["foundation_model"]
    assert len(lineage["parent_foundation"]["sha256"]) == 64
    assert lineage["datasets"]["train"] == upload_sha256(client, train_id)
    assert lineage["e0s_method"] == first["e0s"]["method"]
    assert lineage["strategy"] == first["spec"]["strategy"]["name"]
    again = client.post(f"/jobs/{first['id']}/promote", json={"name": name})
    assert (again.status_code, again.json()["code"]) == (409, "conflict")

    # Jobs cannot be deleted; their files can: the registry keeps its own copy.
    storage = app.state.context.storage
    first_model_keys = job_model_keys(app, first["id"])
    for key in first_model_keys:
        storage.delete(key)
    assert first_model_keys and not any(storage.exists(key) for key in first_model_keys)

    second = client.post("/jobs", json=small_job(train_id, foundation_model=name))
    assert second.status_code == 201, second.text
    done = wait_for_job(client, second.json()["id"], log)
    assert done["state"] == "succeeded", done["error"]
    card = client.get(f"/jobs/{done['id']}/model-card").json()
    assert card["foundation_model"]["name"] == name
    assert card["foundation_model"]["sha256"] == shown["sha256"]
    assert card["foundation_model"]["lineage"]["job_id"] == first["id"]


def upload_sha256(client, dataset_id: str) -> str:
    return client.get(f"/datasets/{dataset_id}").json()["sha256"]


def job_model_keys(app, job_id: str) -> list[str]:
    from core.service.jobs import get_job

    with app.state.context.sessions() as session:
        job = get_job(session, job_id)
        return [key for key in (job.model_key, job.multihead_model_key) if key is not None]
