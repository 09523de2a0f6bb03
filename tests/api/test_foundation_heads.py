"""Multi-head foundations in POST /preflight: the head named in the spec is the one predicting."""

import pytest

from core.data.demo_data import generate_target_dataset, write_extxyz
from tests.conftest import upload


@pytest.fixture(scope="module")
def cells_id(client, tmp_path_factory) -> str:
    cells = generate_target_dataset(6, seed=21, system="CuAu")
    return upload(client, write_extxyz(cells, tmp_path_factory.mktemp("heads") / "c.xyz"))["id"]


def test_preflight_predicts_with_the_named_head_and_its_default_otherwise(
    client, cells_id, standin
) -> None:
    spec = {"foundation_model": standin("mace-multihead", "float32"), "train_dataset": cells_id}

    def energy_error(head: str | None) -> float:
        response = client.post("/preflight", json={**spec, "foundation_head": head})
        assert response.status_code == 200, response.text
        return response.json()["foundation_errors"]["energy_rmse_mev_per_atom"]

    # The heads differ in E0s (0.4 eV per atom), scale and shift, so their errors differ.
    assert energy_error("r2scan") != pytest.approx(energy_error("pbe_d3"), abs=1.0)
    assert energy_error(None) == pytest.approx(energy_error("pbe_d3"), abs=1e-9)


def test_preflight_refuses_an_unknown_head(client, cells_id, standin) -> None:
    response = client.post(
        "/preflight",
        json={
            "foundation_model": standin("mace-multihead", "float32"),
            "foundation_head": "pbe",
            "train_dataset": cells_id,
        },
    )

    assert response.status_code == 422
    assert "pbe_d3, r2scan" in response.json()["detail"]
