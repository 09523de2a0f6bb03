"""A model an admin registers (issue 26) is fine-tuned from its safe form: mace-torch's training
reads a pickle the service wrote from the rebuilt model, and the job succeeds."""

import uuid

import pytest

from core.data.demo_data import generate_target_dataset, write_extxyz
from tests.conftest import FOUNDATIONS_DIR, upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


def test_a_registered_standin_is_fine_tuned_on_the_worker(
    client, worker, settings, standin, tmp_path
) -> None:
    name = f"lab-multihead-{uuid.uuid4().hex[:8]}"
    with (FOUNDATIONS_DIR / f"{standin('mace-multihead', 'float32')}.model").open("rb") as file:
        registered = client.post(
            "/foundation-models", data={"name": name}, files={"file": ("m.model", file)}
        )
    assert registered.status_code == 201, registered.text
    cells = generate_target_dataset(8, seed=31, system="CuAu", include_isolated_atoms=True)
    train_id = upload(client, write_extxyz(cells, tmp_path / "train.extxyz"))["id"]

    response = client.post(
        "/jobs",
        json={
            "foundation_model": name,
            "foundation_head": "r2scan",
            "train_dataset": train_id,
            "strategy": {"name": "naive"},
            "e0s": "isolated_atoms",
            "valid_fraction": 0.25,
            "hyperparameters": {"max_num_epochs": 1, "batch_size": 4},
            "evaluation": {"md": False, "dimers": False},
        },
    )
    assert response.status_code == 201, response.text
    job = wait_for_job(client, response.json()["id"], settings.data_dir / "worker.log", 900)

    assert job["state"] == "succeeded", job["error"]
