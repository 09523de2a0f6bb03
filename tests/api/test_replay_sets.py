"""POST/GET /replay-sets: validation, caching by content hash, and a build run in-process (the
worker path is tested in tests/e2e/test_replay_sets.py)."""

from pathlib import Path

import pytest

from core.data.catalog import register_dataset
from core.data.demo_data import generate_target_dataset, write_extxyz
from core.service.models import ReplaySet
from core.workflows.replay_sets import execute_replay_set

SMALL = {"size": 12, "sources": ["rattle", "strain", "dimer"]}


def stored(app, path: Path) -> str:
    # Stored directly: uploads are tested in test_datasets.py.
    context = app.state.context
    with context.sessions() as session:
        return register_dataset(session, context.storage, path, path.name).id


@pytest.fixture(scope="module")
def datasets(app, client, tmp_path_factory) -> dict[str, str]:
    folder: Path = tmp_path_factory.mktemp("replay-sets")
    files = {
        "alloys": write_extxyz(
            generate_target_dataset(6, seed=1, system="CuAu"), folder / "alloys.extxyz"
        ),
        "molecules": write_extxyz(
            generate_target_dataset(5, seed=2, system="molecules"), folder / "molecules.extxyz"
        ),
    }
    return {name: stored(app, path) for name, path in files.items()}


@pytest.fixture(scope="module")
def built(client, app, datasets) -> dict:
    response = client.post("/replay-sets", json={"train_dataset": datasets["alloys"], **SMALL})
    assert response.status_code == 201, response.text
    queued = response.json()
    assert queued["state"] == "queued"
    assert queued["spec"]["elements"] == ["Cu", "Au"]

    execute_replay_set(app.state.context, queued["id"])

    return client.get(f"/replay-sets/{queued['id']}").json()


def test_a_replay_set_is_built_and_reports_what_it_holds(client, built) -> None:
    assert built["state"] == "succeeded", built["error"]
    assert built["size"] == 12 and built["cut"] is None
    assert sum(built["source_histogram"].values()) == 12
    assert set(built["source_histogram"]) <= set(SMALL["sources"])
    assert set(built["composition"]["element_counts"]) <= {"Cu", "Au"}
    assert built["coverage"]["n_structures"] == 6
    provenance = built["report"]["provenance"]
    assert len(provenance["foundation_sha256"]) == 64 and provenance["seed"] == 0
    dataset = client.get(f"/datasets/{built['dataset_id']}").json()
    assert dataset["summary"]["n_configs"] == 12
    assert {"energy", "forces", "stress"} <= set(dataset["summary"]["labels"])


def test_a_queued_twin_of_a_built_set_takes_its_dataset_without_building(
    client, app, built
) -> None:
    context = app.state.context
    with context.sessions() as session:
        twin = ReplaySet(spec=built["spec"], content_hash=built["content_hash"])
        session.add(twin)
        session.commit()

    state = execute_replay_set(context, twin.id)

    read = client.get(f"/replay-sets/{twin.id}").json()
    assert state.value == read["state"] == "succeeded"
    assert read["dataset_id"] == built["dataset_id"] and read["report"] == built["report"]


def test_the_same_inputs_reuse_the_same_replay_set(client, datasets) -> None:
    spec = {"train_dataset": datasets["molecules"], "size": 5, "sources": ["dimer"], "seed": 4}
    first = client.post("/replay-sets", json=spec)
    again = client.post("/replay-sets", json={**spec, "sources": ["dimer", "dimer"]})
    other = client.post("/replay-sets", json={**spec, "seed": 5})

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"elements": ["Cu", "Fe"]}, "does not know element(s) Fe"),
        ({"elements": ["Cu", "Qq"]}, "not chemical elements: Qq"),
        ({"elements": []}, "at least 1"),
        ({}, "give the elements"),
        ({"elements": ["Cu"], "size": 100_000}, "less than or equal"),
        ({"elements": ["Cu"], "sources": ["magic"]}, "sources"),
        ({"elements": ["Cu"], "sources": []}, "nothing to build from"),
        ({"train_dataset": "nope"}, "train_dataset nope does not exist"),
    ],
)
def test_bad_requests_get_422_naming_the_problem(client, spec, message) -> None:
    response = client.post("/replay-sets", json=spec)

    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


def test_a_pool_without_the_elements_is_refused(client, datasets) -> None:
    response = client.post(
        "/replay-sets",
        json={"elements": ["Cu", "Au"], "pool_datasets": [datasets["molecules"]]},
    )

    assert response.status_code == 422
    assert "none of the replay set's elements Cu, Au" in response.json()["detail"]


def test_a_pool_smaller_than_the_size_asked_for_is_refused(client, datasets) -> None:
    response = client.post(
        "/replay-sets",
        json={
            "elements": ["Cu", "Au"],
            "pool_datasets": [datasets["alloys"]],
            "sources": [],
            "size": 7,
        },
    )

    assert response.status_code == 422
    assert "size 7 is larger than the 6 configurations" in response.json()["detail"]


def test_unknown_replay_set_is_404(client) -> None:
    assert client.get("/replay-sets/nope").status_code == 404


def test_a_job_may_ask_for_an_automatic_replay_set(client, datasets) -> None:
    response = client.post(
        "/jobs",
        json={
            "train_dataset": datasets["molecules"],
            "strategy": {"name": "pseudolabel_replay", "replay": "auto"},
        },
    )

    assert response.status_code == 201, response.text
    assert response.json()["spec"]["strategy"]["replay"]["dataset"] == "auto"
    client.post(f"/jobs/{response.json()['id']}/cancel")


def test_preflight_accepts_an_automatic_replay_set_not_built_yet(client, datasets) -> None:
    response = client.post(
        "/preflight",
        json={
            "train_dataset": datasets["molecules"],
            "strategy": {"name": "pseudolabel_replay", "replay": "auto"},
        },
    )

    assert response.status_code == 200, response.text
