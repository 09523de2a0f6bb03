"""Issue 18 through the real upload route: every dialect read, keys named in the form, labels
not found said in the 201, energy-only sets refused for training with a clear 422, and the same
bytes uploaded twice returning the existing dataset."""

from pathlib import Path

import pytest

DIALECTS = Path(__file__).resolve().parent.parent / "data" / "dialects"


def post(client, name: str, **form: str):
    content = (DIALECTS / name).read_bytes()
    return client.post("/datasets", files={"file": (name, content)}, data=form)


def created(client, name: str, **form: str) -> dict:
    response = post(client, name, **form)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("janus_dft.extxyz", ("dft_energy", "dft_forces", "dft_stress", None)),
        ("gap_virial.extxyz", ("energy", "force", None, "virial")),
        ("capitalised.extxyz", ("DFT_Energy", "DFT_Forces", "DFT_Stress", None)),
    ],
)
def test_each_dialect_is_uploaded_with_its_labels_and_keys(client, name, keys) -> None:
    summary = created(client, name)["summary"]

    found = (
        summary["energy_key"],
        summary["forces_key"],
        summary["stress_key"],
        summary["virials_key"],
    )
    assert found == keys
    assert {"energy", "forces"} <= set(summary["labels"])
    assert summary["label_counts"]["forces"] == {"configs": 6, "of": 6}
    assert summary["warnings"] == []


def test_labels_under_unknown_keys_are_not_found_and_the_201_says_so(client) -> None:
    response = post(client, "custom_keys.extxyz")

    assert response.status_code in (200, 201), response.text
    summary = response.json()["summary"]
    assert summary["labels"] == []
    assert "no energy or forces labels found" in summary["warnings"][0]


def test_keys_named_in_the_form_read_the_labels_and_a_job_can_train_on_them(client) -> None:
    body = created(
        client,
        "custom_keys.extxyz",
        energy_key="pbe_energy",
        forces_key="pbe_forces",
        virials_key="pbe_virials",
    )

    assert body["summary"]["labels"] == ["energy", "forces", "virials"]
    assert body["summary"]["requested_keys"]["energy_key"] == "pbe_energy"
    job = client.post("/jobs", json={"train_dataset": body["id"]})
    assert job.status_code == 201, job.text
    assert job.json()["effective_hyperparameters"]["loss"] == "stress"
    client.post(f"/jobs/{job.json()['id']}/cancel")


def test_a_named_key_missing_from_the_file_is_a_422_naming_it(client) -> None:
    response = post(client, "mace_ref.extxyz", stress_key="pbe_stress")

    assert response.status_code == 422
    assert "stress_key 'pbe_stress' is in no configuration" in response.json()["detail"]


def test_an_energy_only_set_is_accepted_for_testing_but_not_for_training(client) -> None:
    scan = created(client, "energy_only.extxyz")
    train = created(client, "mace_ref.extxyz")

    refused = client.post("/jobs", json={"train_dataset": scan["id"]})
    tested = client.post("/jobs", json={"train_dataset": train["id"], "test_dataset": scan["id"]})

    assert scan["summary"]["labels"] == ["energy"]
    assert refused.status_code == 422
    assert "energy-only set" in refused.json()["detail"]
    assert "test_dataset" in refused.json()["detail"]
    assert tested.status_code == 201, tested.text
    client.post(f"/jobs/{tested.json()['id']}/cancel")


def test_an_energy_only_set_is_refused_as_validation_data(client) -> None:
    scan = created(client, "energy_only.extxyz")
    train = created(client, "mace_ref.extxyz")

    refused = client.post("/jobs", json={"train_dataset": train["id"], "valid_dataset": scan["id"]})

    assert refused.status_code == 422
    assert refused.json()["detail"].startswith(f"valid_dataset {scan['id']} has energies but no")


def test_the_same_bytes_uploaded_twice_return_the_existing_dataset(client) -> None:
    first = post(client, "mixed_virials.extxyz")
    again = post(client, "mixed_virials.extxyz")
    other_keys = post(client, "mixed_virials.extxyz", virials_key="REF_virials")

    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert other_keys.status_code == 201, other_keys.text
    assert other_keys.json()["id"] != first.json()["id"]
    summary = first.json()["summary"]
    assert summary["label_counts"]["virials"] == {"configs": 3, "of": 6}


def test_scratch_is_accepted_without_a_foundation_and_refuses_foundation_e0s(client) -> None:
    # Issue 18 item 6.
    train = created(client, "janus_dft.extxyz")
    scratch = {"train_dataset": train["id"], "strategy": {"name": "scratch"}}

    accepted = client.post("/jobs", json={**scratch, "foundation_model": None})
    refused = client.post("/jobs", json={**scratch, "e0s": "estimated"})

    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["spec"]["foundation_model"] is None
    assert accepted.json()["spec"]["e0s"] == "average"
    assert refused.status_code == 422
    assert "scratch model has none" in refused.text
    client.post(f"/jobs/{accepted.json()['id']}/cancel")
