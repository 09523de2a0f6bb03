"""Issue 21: what would fail later and can be known at submission is refused then, with the fix."""

import ase.io
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from tests.conftest import upload


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


def test_explicit_e0s_missing_an_element_of_the_data_are_refused_with_the_fix(
    client, train_id
) -> None:
    spec = {"train_dataset": train_id, "e0s": {"H": -13.6, "C": -1027.0, "N": -1484.0}}

    response = client.post("/jobs", json=spec)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "explicit e0s lack O" in detail
    assert "O: <eV>" in detail


def test_foundation_e0s_on_data_at_another_reference_are_refused_with_how_to_acknowledge(
    client, train_id
) -> None:
    spec = {"train_dataset": train_id, "e0s": "foundation"}

    response = client.post("/jobs", json=spec)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "E0 mismatch" in detail
    assert "e0s='estimated'" in detail
    assert "add 'reference_mismatch' to preflight.acknowledge" in detail


def test_an_acknowledged_reference_mismatch_is_accepted(client, train_id) -> None:
    spec = {
        "train_dataset": train_id,
        "e0s": "foundation",
        "preflight": {"acknowledge": ["reference_mismatch"]},
        "evaluation": {"md": False, "dimers": False},
    }

    response = client.post("/jobs", json=spec)

    assert response.status_code == 201, response.text
    client.post(f"/jobs/{response.json()['id']}/cancel")


def test_estimated_e0s_that_correct_the_offset_are_accepted(client, train_id) -> None:
    spec = {"train_dataset": train_id, "evaluation": {"md": False, "dimers": False}}

    response = client.post("/jobs", json=spec)

    assert response.status_code == 201, response.text
    client.post(f"/jobs/{response.json()['id']}/cancel")


def test_a_published_foundation_that_cannot_be_fetched_offline_is_refused_naming_it(
    client, app, train_id, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing in mace's cache
    monkeypatch.setattr(app.state.context.registry, "offline", True)
    spec = {"train_dataset": train_id, "foundation_model": "mace-mp-0-small"}

    response = client.post("/jobs", json=spec)

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "'mace-mp-0-small' is not cached here" in detail
    assert "name=mace-mp-0-small" in detail and "POST /foundation-models" in detail


def test_a_published_foundation_in_maces_cache_is_accepted_offline(
    client, app, train_id, tmp_path, monkeypatch
) -> None:
    from core.registry.foundations import published_source

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(app.state.context.registry, "offline", True)
    _, cached = published_source("mace-mp-0-small")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a cached checkpoint")
    spec = {"train_dataset": train_id, "foundation_model": "mace-mp-0-small", "e0s": "average"}

    response = client.post("/jobs", json=spec)

    # Accepted past the fetch check; elements of an unloaded published model are the worker's.
    assert response.status_code == 201, response.text
    client.post(f"/jobs/{response.json()['id']}/cancel")


def labelled(atoms: Atoms) -> Atoms:
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def test_a_validation_element_the_training_data_hold_only_as_an_isolated_atom_is_refused(
    client, target_files, tmp_path
) -> None:
    # Issue 26: Cu in the training data only as an isolated atom (an E0 reference) and in the
    # validation data as structures: accepted before, then a KeyError deep inside mace.
    molecules = ase.io.read(target_files["train"], index=":", format="extxyz")
    isolated_cu = labelled(Atoms("Cu", positions=[[0, 0, 0]]))
    train = tmp_path / "train-with-isolated-cu.extxyz"
    ase.io.write(train, [*molecules[:20], isolated_cu], format="extxyz")
    dimer = labelled(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.4]]))
    valid = tmp_path / "valid-with-cu.extxyz"
    ase.io.write(valid, [*molecules[20:30], dimer], format="extxyz")
    spec = {
        "train_dataset": upload(client, train)["id"],
        "valid_dataset": upload(client, valid)["id"],
    }

    response = client.post("/jobs", json=spec)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "valid_dataset" in detail
    assert "element(s) Cu that the training data lack (other than as isolated atoms)" in detail
