"""Issue 25 through the real worker: a fine-tuned model keeps every element of its foundation,
with the foundation's E0s verified for the elements its data lack; forgetting on data with more
elements than the training data is measured, never fatal; scratch uses the data's isolated
atoms."""

from pathlib import Path

import pytest
import torch
from ase.data import chemical_symbols

from core.data.demo_data import copper_cells, generate_foundation_configurations
from core.science.e0s import isolated_atom_energies, model_e0s
from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e
DIALECTS = Path(__file__).resolve().parent.parent / "data" / "dialects"
QUICK = {"max_num_epochs": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def ids(client, tmp_path_factory) -> dict[str, str]:
    from core.data.demo_data import write_extxyz

    folder = tmp_path_factory.mktemp("elements")
    # Every element of the demo foundation: more than the training data hold.
    pretraining_like = generate_foundation_configurations(16, seed=11)
    files = {
        "copper": write_extxyz(copper_cells(12, seed=5), folder / "copper.extxyz"),
        "forgetting": write_extxyz(pretraining_like, folder / "forgetting.extxyz"),
        "single_atoms": DIALECTS / "single_atoms.extxyz",
    }
    return {name: upload(client, path)["id"] for name, path in files.items()}


@pytest.mark.parametrize("strategy", [{"name": "naive"}, {"name": "lora", "rank": 2}])
def test_one_element_data_deliver_every_foundation_element_with_verified_e0s(
    client, worker, settings, ids, demo_foundation, tmp_path, strategy
) -> None:
    spec = {
        "train_dataset": ids["copper"],
        "strategy": strategy,
        "hyperparameters": QUICK,
        "evaluation": {"md": False, "dimers": False, "replay_dataset": ids["forgetting"]},
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text

    job = wait_for_job(client, created.json()["id"], settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    foundation = torch.load(demo_foundation, map_location="cpu", weights_only=False)
    own = {chemical_symbols[z]: e0 for z, e0 in model_e0s(foundation).items()}
    assert job["elements"] == list(own) == job["checks"]["e0s"]["elements"]
    assert job["checks"]["e0s"]["verified"] is True
    assert job["e0s"]["kept_from_foundation"] == {s: e0 for s, e0 in own.items() if s != "Cu"}
    # The downloaded model: every foundation element, each lone atom at its E0 (the demo
    # foundation adds nothing to a lone atom), Cu at the estimated E0 and the others at the
    # foundation's.
    response = client.get(f"/jobs/{job['id']}/model")
    assert response.status_code == 200
    (tmp_path / "m.model").write_bytes(response.content)
    model = torch.load(tmp_path / "m.model", map_location="cpu", weights_only=False)
    carried = {chemical_symbols[z]: e0 for z, e0 in model_e0s(model).items()}
    expected = {**own, "Cu": job["e0s"]["e0s"]["Cu"]}
    assert carried == pytest.approx(expected, abs=1e-9)
    assert abs(expected["Cu"] - own["Cu"]) > 1.0  # the shifted level of theory was corrected
    assert isolated_atom_energies(model, list(own)) == pytest.approx(expected, abs=1e-6)
    # Forgetting on the eleven-element set is measured, and nothing is missing.
    metrics = client.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["forgetting"]["force_rmse_ratio"] > 0
    assert not metrics.get("not_measured")
    card = client.get(f"/jobs/{job['id']}/model-card").json()
    assert card["elements"] == list(own)


def test_a_forgetting_set_the_training_elements_lack_is_refused_with_the_fix(client, ids) -> None:
    spec = {
        "train_dataset": ids["copper"],
        "strategy": {"name": "lora"},
        "elements": "training",
        "evaluation": {"replay_dataset": ids["forgetting"]},
    }

    response = client.post("/jobs", json=spec)

    assert response.status_code == 422
    detail = response.text
    assert "evaluation.replay_dataset" in detail and "Pd" in detail
    assert "elements='foundation'" in detail


def test_a_scratch_sweep_member_accepts_a_forgetting_set_with_more_elements_and_records_why(
    client, worker, settings, ids
) -> None:
    sweep = {
        "base": {
            "train_dataset": ids["copper"],
            "hyperparameters": QUICK,
            "evaluation": {"md": False, "dimers": False, "replay_dataset": ids["forgetting"]},
        },
        "strategies": ["scratch"],
    }

    created = client.post("/sweeps", json=sweep)

    assert created.status_code == 201, created.text
    (job_id,) = [row["job_id"] for row in created.json()["table"]]
    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")
    assert job["state"] == "succeeded", job["error"]
    metrics = client.get(f"/jobs/{job_id}/metrics").json()
    assert metrics.get("forgetting") is None
    assert "nothing to forget" in metrics["not_measured"]["forgetting"]
    summary = client.get(f"/sweeps/{created.json()['id']}").json()
    assert "nothing to forget" in summary["recommendation"]["broad_use"]["reason"]


def test_scratch_on_data_with_isolated_atoms_uses_them(client, worker, settings, ids) -> None:
    spec = {
        "train_dataset": ids["single_atoms"],
        "foundation_model": None,
        "strategy": {
            "name": "scratch",
            "architecture": {"hidden_irreps": "8x0e", "num_interactions": 1, "correlation": 1},
        },
        "hyperparameters": QUICK,
        "evaluation": {"md": False, "dimers": False},
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["e0s"] == "isolated_atoms"

    job = wait_for_job(client, created.json()["id"], settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    assert job["e0s"]["method"] == "isolated_atoms"
    references = job["e0s"]["isolated_atom_references"]
    assert set(references) == {"Cu", "Au"} == set(job["e0s"]["e0s"])
    assert job["e0s"]["e0s"] == pytest.approx(references)
    assert job["elements"] == ["Cu", "Au"]
    assert not [w for w in job["warnings"] if "average" in w and "study" in w]
