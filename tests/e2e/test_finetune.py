"""The walking skeleton through real services: upload, fine-tune on a real worker, download, use."""

import ase.io
import numpy as np
import pytest
from ase import Atoms
from mace.calculators import MACECalculator

from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def datasets(client, target_files) -> dict[str, str]:
    return {name: upload(client, path)["id"] for name, path in target_files.items()}


def download(client, job_id: str, tmp_path) -> str:
    response = client.get(f"/jobs/{job_id}/model")
    assert response.status_code == 200
    path = tmp_path / "finetuned.model"
    path.write_bytes(response.content)
    return str(path)


def test_naive_fine_tune_runs_on_the_worker_and_delivers_an_ase_ready_model(
    client, worker, settings, datasets, target_files, tmp_path
) -> None:
    spec = {
        "train_dataset": datasets["train"],
        "test_dataset": datasets["test"],
        "hyperparameters": {"max_num_epochs": 3, "batch_size": 10},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]

    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert {entry["epoch"] for entry in job["epochs"]} >= {0, 1, 2}
    assert job["progress"]["epochs_done"] == 3
    e0s = job["e0s"]
    assert e0s["method"] == "estimated"
    assert e0s["energy_rmse_after"] < e0s["energy_rmse_before"] / 10

    calc = MACECalculator(
        model_paths=download(client, job_id, tmp_path), device="cpu", default_dtype="float64"
    )
    molecule = ase.io.read(target_files["test"], index=0, format="extxyz")
    molecule.calc = calc
    assert np.isfinite(molecule.get_potential_energy())
    assert molecule.get_forces().shape == (len(molecule), 3)
    for symbol, e0 in e0s["e0s"].items():
        atom = Atoms(symbol, positions=[[0, 0, 0]], cell=[20, 20, 20], pbc=False)
        atom.calc = calc
        assert atom.get_potential_energy() == pytest.approx(e0, abs=1e-6)

    metrics = client.get(f"/jobs/{job_id}/metrics").json()
    test = metrics["accuracy"]["test"]
    assert test["n_configs"] == 12
    assert 0 < test["energy_rmse_mev_per_atom"] < e0s["energy_rmse_before"]
    assert test["forces_rmse_mev_per_a"] > 0


def test_scratch_baseline_trains_a_new_model_with_averaged_e0s(
    client, worker, settings, datasets, tmp_path
) -> None:
    spec = {
        "train_dataset": datasets["train"],
        "strategy": {
            "name": "scratch",
            "architecture": {"hidden_irreps": "8x0e", "num_interactions": 1, "correlation": 2},
        },
        "e0s": "average",
        "hyperparameters": {"max_num_epochs": 2, "batch_size": 10},
        "evaluation": {"md": False, "dimers": False},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]

    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    assert job["e0s"]["method"] == "average"
    calc = MACECalculator(
        model_paths=download(client, job_id, tmp_path), device="cpu", default_dtype="float64"
    )
    symbol, e0 = next(iter(job["e0s"]["e0s"].items()))
    atom = Atoms(symbol, positions=[[0, 0, 0]], cell=[20, 20, 20], pbc=False)
    atom.calc = calc
    assert atom.get_potential_energy() == pytest.approx(e0, abs=1e-6)
