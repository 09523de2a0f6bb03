"""POST /foundation-models over HTTP (issue 26): a file that would run code is a 422 naming what
it refers to, and nothing of it runs, then or when models are listed; a legitimate ScaleShiftMACE
registers with the facts a request needs recorded. Specs are strict about JSON types."""

import uuid
from pathlib import Path

import pytest

from core.registry.foundations import file_sha256
from tests.conftest import FOUNDATIONS_DIR, upload
from tests.core.registry.hostile_models import exec_pickle, mace_carrying_exec, plain_mace


def register(client, name: str, path: Path):
    with path.open("rb") as stream:
        return client.post(
            "/foundation-models", data={"name": name}, files={"file": ("m.model", stream)}
        )


def test_a_model_file_that_would_run_code_is_refused_and_nothing_runs(
    client, demo_foundation, tmp_path
) -> None:
    marker = tmp_path / "ran"
    files = {
        f"bare-{uuid.uuid4().hex[:8]}": exec_pickle(tmp_path / "bare.model", marker),
        f"carried-{uuid.uuid4().hex[:8]}": mace_carrying_exec(
            tmp_path / "carried.model", demo_foundation, marker
        ),
    }

    for name, path in files.items():
        response = register(client, name, path)
        assert response.status_code == 422, response.text
        assert "numpy.testing._private.utils.runstring" in response.json()["detail"]
    listed = [item["name"] for item in client.get("/foundation-models").json()]

    assert not marker.exists()
    assert not set(files) & set(listed)


def test_a_plain_mace_is_refused_at_registration_not_deep_in_a_job(client, tmp_path) -> None:
    response = register(client, f"plain-{uuid.uuid4().hex[:8]}", plain_mace(tmp_path / "p.model"))

    assert response.status_code == 422
    assert "fine-tunes only a ScaleShiftMACE" in response.json()["detail"]


def test_a_standin_registers_with_its_facts_recorded(client, standin) -> None:
    name = f"lab-{uuid.uuid4().hex[:8]}"
    path = FOUNDATIONS_DIR / f"{standin('mace-multihead', 'float32')}.model"

    response = register(client, name, path)
    assert response.status_code == 201, response.text
    listed = {item["name"]: item for item in client.get("/foundation-models").json()}[name]

    assert response.json()["upload_sha256"] == file_sha256(path)
    assert listed["sha256"] == response.json()["sha256"] != file_sha256(path)  # the safe form
    assert listed["heads"] == ["pbe_d3", "r2scan"] and listed["default_head"] == "pbe_d3"
    assert listed["architecture"] == "ScaleShiftMACE" and listed["dtype"] == "float32"
    assert listed["e0s"]["r2scan"]["Cu"] == pytest.approx(listed["e0s"]["pbe_d3"]["Cu"] - 0.4)


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"max_num_epochs": "10"}, "max_num_epochs"),
        ({"max_num_epochs": True}, "max_num_epochs"),
        ({"batch_size": 4.5}, "batch_size"),
        ({"lr": "0.01"}, "lr"),
        ({"lr": True}, "lr"),
    ],
)
def test_numbers_as_strings_or_booleans_are_a_422_naming_the_field(
    client, train_id, hyperparameters, field
) -> None:
    response = client.post(
        "/preflight", json={"train_dataset": train_id, "hyperparameters": hyperparameters}
    )

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(error["loc"][-2:] == ["hyperparameters", field] for error in errors), errors


def test_a_whole_number_where_a_float_is_expected_is_taken(client, train_id) -> None:
    response = client.post(
        "/jobs",
        json={
            "train_dataset": train_id,
            "hyperparameters": {"lr": 1, "max_num_epochs": 1, "energy_weight": 1},
        },
    )

    assert response.status_code == 201, response.text
    assert response.json()["spec"]["hyperparameters"]["lr"] == 1.0


def test_submitting_a_job_reads_the_foundations_facts_never_its_file(
    client, train_id, monkeypatch
) -> None:
    import torch

    def no_loading(*args, **kwargs):
        raise AssertionError("a request loaded a model file")

    monkeypatch.setattr("core.registry.loading.read_safe_model", no_loading)
    monkeypatch.setattr(torch, "load", no_loading)
    spec = {"train_dataset": train_id, "foundation_model": "mace-demo-emt", "e0s": "average"}

    refused = client.post("/jobs", json={**spec, "foundation_head": "nope"})
    accepted = client.post("/jobs", json=spec)

    assert refused.status_code == 422 and "no head 'nope'" in refused.json()["detail"]
    assert accepted.status_code == 201, accepted.text
