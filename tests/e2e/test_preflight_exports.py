"""Issue 9 through the real worker: preflight stops a doomed job before training; a normal job
delivers tested exports, a recorded split, its cost and a model card."""

from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.datasets import read_configurations
from core.data.demo_data import generate_target_dataset, write_extxyz
from core.registry.foundations import load_own_model
from core.science.inference import _batches, predict
from core.science.spec import JobSpec
from core.workflows.submission import submit_job
from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    """The demo target molecules, each rattled molecule kind its own "trajectory"."""
    configs = generate_target_dataset(40, seed=1, system="molecules")
    for atoms in configs:
        atoms.info["trajectory"] = atoms.get_chemical_formula()
    return write_extxyz(configs, tmp_path_factory.mktemp("trajectories") / "train.extxyz")


@pytest.fixture(scope="module")
def train_id(client, train_file) -> str:
    return upload(client, train_file)["id"]


@pytest.fixture(scope="module")
def delivered_job(client, worker, settings, train_id) -> dict:
    spec = {
        "train_dataset": train_id,
        "split": {"test_fraction": 0.2, "group_by": "trajectory"},
        "level_of_theory": "EMT + per-element offsets",
        "hyperparameters": {"max_num_epochs": 1, "batch_size": 10},
        "evaluation": {"md": False, "dimers": False},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]
    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")
    assert job["state"] == "succeeded", job["error"]
    return job


def test_a_job_with_a_blocking_finding_fails_at_preflight_without_training(
    client, app, worker, settings, train_id
) -> None:
    spec = {"train_dataset": train_id, "e0s": "foundation"}
    # Submitted past the API's own check (as a dataset too large for it would be), so the
    # worker's preflight is what stops it.
    with app.state.context.sessions() as session:
        job_id = submit_job(session, JobSpec.model_validate(spec), app.state.context.registry).id
        app.state.dispatcher(session, "job", job_id)

    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")

    assert job["state"] == "failed"
    assert job["error"].startswith("preflight: [reference_mismatch]")
    assert job["error"].endswith("add 'reference_mismatch' to preflight.acknowledge")
    assert job["preflight"]["blocking"] == ["reference_mismatch"]
    assert job["epochs"] == [] and job["cost"]["actual"] is None
    assert job["cost"]["predicted"]["seconds_per_epoch"] > 0
    assert client.get(f"/jobs/{job_id}/model").status_code == 409


def test_the_split_keeps_trajectories_apart_and_is_recorded(delivered_job, train_file) -> None:
    split = delivered_job["split"]
    configs = read_configurations(train_file)
    kinds = {
        side: {configs[i].info["trajectory"] for i in split[side]}
        for side in ("train", "valid", "test")
    }

    assert split["group_by"] == "trajectory"
    assert not kinds["train"] & kinds["test"] and not kinds["train"] & kinds["valid"]
    assert split["counts"]["test"] == len(split["test"]) > 0
    assert delivered_job["preflight"]["blocking"] == []


def test_the_cost_estimate_is_recorded_next_to_what_training_took(delivered_job) -> None:
    cost = delivered_job["cost"]

    assert cost["predicted"]["seconds_per_epoch"] > 0
    assert cost["actual"]["epochs"] == 1 and cost["actual"]["seconds_per_epoch"] > 0


def test_exports_load_and_reproduce_the_delivered_model(
    client, delivered_job, target_files, tmp_path
) -> None:
    job_id = delivered_job["id"]
    files = {}
    for variant in ("target", "torchscript", "lammps"):
        response = client.get(f"/jobs/{job_id}/model", params={"variant": variant})
        assert response.status_code == 200, (variant, delivered_job["exports"])
        files[variant] = tmp_path / f"{variant}.pt"
        files[variant].write_bytes(response.content)
    model = load_own_model(files["target"])
    configs = read_configurations(target_files["test"])[:2]
    expected = predict(model, configs)

    scripted = torch.jit.load(str(files["torchscript"]))
    batch = next(iter(_batches(model, configs, len(configs))))
    output = scripted(batch.to_dict(), training=False, compute_force=True)

    np.testing.assert_allclose(
        output["energy"].detach().numpy(), [p.energy for p in expected], atol=1e-6
    )
    assert torch.jit.load(str(files["lammps"])) is not None
    assert all(entry["ok"] for entry in delivered_job["exports"].values())


def test_the_model_card_names_where_the_model_came_from(client, delivered_job) -> None:
    job_id = delivered_job["id"]

    card = client.get(f"/jobs/{job_id}/model-card").json()
    page = client.get(f"/jobs/{job_id}/model-card", params={"format": "md"})

    assert card["job_id"] == job_id
    assert card["foundation_model"]["name"] == "mace-demo-emt"
    assert len(card["foundation_model"]["sha256"]) == 64
    assert len(card["datasets"]["train"]["sha256"]) == 64
    assert card["datasets"]["train"]["n_configs"] == 40
    assert card["level_of_theory"] == "EMT + per-element offsets"
    assert card["strategy"]["name"] == "naive"
    assert card["effective_hyperparameters"]["lr"] == 1e-3
    assert set(card["e0s"]["values_ev"]) == {"H", "C", "N", "O"}
    assert card["metrics"]["test_forces_rmse_mev_per_a"] > 0
    assert card["software"]["mace-torch"] == "0.3.16"
    assert page.headers["content-type"].startswith("text/markdown")
    assert f"# Model card: mlft job {job_id}" in page.text
