"""Issue 18 through a real worker: a periodic set with stress, 1-atom crystals and isolated atoms
is trained with the stress loss, tested on an energy-only set, and every configuration is
accounted for; scratch trains elements the foundation lacks without a foundation at all."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e

DIALECTS = Path(__file__).resolve().parent.parent / "data" / "dialects"
ONE_EPOCH = {"max_num_epochs": 1, "batch_size": 4}
NO_MD = {"md": False, "dimers": False}


def test_a_periodic_set_with_stress_trains_stress_and_accounts_for_every_configuration(
    client, worker, settings
) -> None:
    train = upload(client, DIALECTS / "single_atoms.extxyz")
    scan = upload(client, DIALECTS / "energy_only.extxyz")
    spec = {
        "train_dataset": train["id"],
        "test_dataset": scan["id"],
        "e0s": "isolated_atoms",
        "hyperparameters": ONE_EPOCH,
        "evaluation": NO_MD,
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text

    job = wait_for_job(client, created.json()["id"], settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    # Item 3: the loss that was used, and on how many configurations' stress.
    split = job["split"]
    loss = job["checks"]["loss"]
    assert loss["loss"] == "stress" == job["effective_hyperparameters"]["loss"]
    assert loss["configs_with_stress"] == len(split["train"]) > 0
    # Item 5: the two isolated atoms (positions 8, 9) are set aside and named; the two 1-atom
    # periodic crystals (6, 7) are training data.
    assert split["set_aside"]["isolated_atoms"] == [8, 9]
    assert split["counts"]["isolated_atoms"] == 2
    assert {6, 7} <= set(split["train"] + split["valid"])
    assert sorted(split["train"] + split["valid"] + split["set_aside"]["isolated_atoms"]) == list(
        range(10)
    )
    # Item 7: the E0s' energy error is that of the training data, not of the isolated atoms.
    assert job["e0s"]["n_configs"] == len(split["train"]) + len(split["valid"])
    assert job["e0s"]["energy_rmse_after"] > 0
    # Item 4: the energy-only test set is evaluated, with and without the mean offset.
    test = client.get(f"/jobs/{job['id']}/metrics").json()["accuracy"]["test"]
    assert test["n_configs"] == 5
    assert test["forces_rmse_mev_per_a"] is None
    assert test["energy_rmse_without_offset_mev_per_atom"] <= test["energy_rmse_mev_per_atom"]


def zirconia_cells(count: int) -> list[Atoms]:
    """Tiny ZrO2-like cells with made-up labels: the demo foundation has no Zr."""
    rng = np.random.default_rng(0)
    cells = []
    for index in range(count):
        a = 5.1 + 0.05 * index
        atoms = Atoms(
            "ZrO2" if index % 2 else "Zr2O4",
            scaled_positions=rng.uniform(0, 1, (3 if index % 2 else 6, 3)),
            cell=[a, a, a],
            pbc=True,
        )
        atoms.info["DFT_energy"] = -9.0 * len(atoms) + rng.normal(0, 0.1)
        atoms.new_array("DFT_forces", rng.normal(0, 0.3, (len(atoms), 3)))
        cells.append(atoms)
    return cells


def test_scratch_trains_elements_the_foundation_lacks_without_a_foundation(
    client, worker, settings, tmp_path
) -> None:
    path = tmp_path / "zirconia.extxyz"
    ase.io.write(path, zirconia_cells(6), format="extxyz")
    dataset = upload(client, path)
    spec = {
        "train_dataset": dataset["id"],
        "foundation_model": None,
        "strategy": {
            "name": "scratch",
            "architecture": {"hidden_irreps": "8x0e", "num_interactions": 1, "correlation": 1},
        },
        "hyperparameters": ONE_EPOCH,
        "evaluation": NO_MD,
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text

    job = wait_for_job(client, created.json()["id"], settings.data_dir / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    assert job["e0s"]["method"] == "average"
    assert set(job["e0s"]["e0s"]) == {"O", "Zr"}
    assert not [w for w in job["warnings"] if "foundation" in w or "E0 mismatch" in w]
