"""POST /preflight: a job's first stage, answered synchronously without creating a job."""

import pytest

from core.data.demo_data import generate_target_dataset, write_extxyz
from core.science.label_units import KCAL_PER_MOL_PER_EV
from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def test_preflight_reports_foundation_errors_e0_residuals_and_a_suggestion(
    client, train_id
) -> None:
    response = client.post("/preflight", json={"train_dataset": train_id})

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["blocking"] == []
    assert report["n_configs"] == 40
    assert set(report["e0_residuals"]) == {"H", "C", "N", "O"}
    # The demo target data sit a few eV per atom off EMT; estimated E0s correct that.
    codes = {f["code"]: f["severity"] for f in report["findings"]}
    assert codes["reference_mismatch"] == "info"
    assert report["foundation_errors"]["energy_rmse_mev_per_atom"] > 500
    assert report["foundation_errors"]["forces_rmse_mev_per_a"] >= 0
    assert report["suggestion"]["strategy"] == "naive"
    assert report["suggestion"]["reason"]
    cost = report["cost_estimate"]
    assert cost["seconds_per_epoch"] > 0 and cost["peak_memory_mb"] > 0
    assert cost["steps_per_epoch"] == 8  # 36 training configurations in batches of 5


def test_keeping_the_foundation_e0s_on_shifted_data_is_blocking(client, train_id) -> None:
    report = client.post("/preflight", json={"train_dataset": train_id, "e0s": "foundation"})

    assert report.json()["blocking"] == ["reference_mismatch"]


def test_an_acknowledged_finding_no_longer_blocks(client, train_id) -> None:
    spec = {
        "train_dataset": train_id,
        "e0s": "foundation",
        "preflight": {"acknowledge": ["reference_mismatch"]},
    }

    report = client.post("/preflight", json=spec).json()

    assert report["blocking"] == []
    [finding] = [f for f in report["findings"] if f["code"] == "reference_mismatch"]
    assert finding["severity"] == "warning" and finding["message"].endswith("(acknowledged)")


def test_energies_in_kcal_per_mol_are_blocking(client, tmp_path) -> None:
    configs = generate_target_dataset(24, seed=7, system="molecules")
    for atoms in configs:
        atoms.calc.results["energy"] *= KCAL_PER_MOL_PER_EV
    dataset = upload(client, write_extxyz(configs, tmp_path / "kcal.extxyz"))["id"]

    report = client.post("/preflight", json={"train_dataset": dataset}).json()

    assert "energy_units" in report["blocking"], report["findings"]
    [finding] = [f for f in report["findings"] if f["code"] == "energy_units"]
    assert finding["details"]["unit"] == "kcal/mol"


def test_preflight_of_an_unknown_dataset_is_refused(client) -> None:
    response = client.post("/preflight", json={"train_dataset": "missing"})

    assert response.status_code == 422
    assert "train_dataset missing does not exist" in response.json()["detail"]
