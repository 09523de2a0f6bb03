"""GET /sweeps: a project's sweeps, newest first; another project's stay invisible (issue 21)."""

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

ADMIN = {"Authorization": "Bearer sweep-list-admin"}


@pytest.fixture(scope="module")
def api(settings, demo_foundation) -> Iterator[TestClient]:
    from api.app import create_app

    secured = settings.model_copy(update={"admin_token": SecretStr("sweep-list-admin")})
    app = create_app(secured, start_worker=False, enqueue=lambda _job_id: None)
    with TestClient(app) as test_client:
        yield test_client


def project(api: TestClient) -> dict[str, str]:
    created = api.post("/projects", json={"name": f"sweeps-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    token = api.post(f"/projects/{created.json()['id']}/tokens", json={"name": "t"}, headers=ADMIN)
    return {"Authorization": f"Bearer {token.json()['token']}"}


def sweep_of(api: TestClient, headers: dict[str, str], train_file) -> str:
    with train_file.open("rb") as stream:
        dataset = api.post("/datasets", files={"file": ("t.extxyz", stream)}, headers=headers)
    spec = {
        "base": {"train_dataset": dataset.json()["id"]},
        "strategies": ["naive", "lora"],
    }
    response = api.post("/sweeps", json=spec, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_sweeps_are_listed_for_their_own_project_only(api, target_files) -> None:
    mine, theirs = project(api), project(api)
    first = sweep_of(api, mine, target_files["train"])
    second = sweep_of(api, mine, target_files["train"])
    other = sweep_of(api, theirs, target_files["train"])

    listed = api.get("/sweeps", headers=mine)

    assert listed.status_code == 200
    body = listed.json()
    assert [sweep["id"] for sweep in body["data"]] == [second, first]
    assert body["count"] == 2
    assert body["data"][0]["strategies"] == ["naive", "lora"]
    assert body["data"][0]["jobs"] == {"queued": 2}
    assert body["data"][0]["finished"] is False
    assert other not in {sweep["id"] for sweep in body["data"]}
