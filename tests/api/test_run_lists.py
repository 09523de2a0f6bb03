"""Runs a researcher can find (issue 28): jobs and sweeps take a name and tags; the lists filter
by state, strategy, foundation, name and tags, sort newest first and answer `total` and
`has_more`. Each test works in a project of its own, so its counts are exact."""

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

ADMIN = {"Authorization": "Bearer run-lists-admin"}
Headers = dict[str, str]


@pytest.fixture(scope="module")
def api(settings, demo_foundation) -> Iterator[TestClient]:
    from api.app import create_app

    secured = settings.model_copy(
        update={"admin_token": SecretStr("run-lists-admin"), "submission_check_max_atoms": 0}
    )
    app = create_app(secured, start_worker=False, enqueue=lambda _job_id: None)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture()
def project(api: TestClient) -> Headers:
    created = api.post("/projects", json={"name": f"runs-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    token = api.post(f"/projects/{created.json()['id']}/tokens", json={"name": "t"}, headers=ADMIN)
    return {"Authorization": f"Bearer {token.json()['token']}"}


@pytest.fixture()
def train(api: TestClient, project: Headers, target_files) -> str:
    with target_files["train"].open("rb") as stream:
        response = api.post("/datasets", files={"file": ("cu.extxyz", stream)}, headers=project)
    return response.json()["id"]


def submit(api: TestClient, headers: Headers, train: str, **spec) -> dict:
    response = api.post("/jobs", json={"train_dataset": train, **spec}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


def test_a_job_keeps_its_name_and_tags(api, project, train) -> None:
    job = submit(api, project, train, name="cu lora r8", tags={"campaign": "Cu", "owner": "al"})

    read = api.get(f"/jobs/{job['id']}", headers=project).json()

    assert (job["name"], job["tags"]) == ("cu lora r8", {"campaign": "Cu", "owner": "al"})
    assert (read["name"], read["tags"]) == ("cu lora r8", {"campaign": "Cu", "owner": "al"})


def test_jobs_filter_by_tags_all_of_which_must_match(api, project, train) -> None:
    cu_lora = submit(
        api, project, train, strategy={"name": "lora"}, tags={"campaign": "Cu", "kind": "a"}
    )
    cu_naive = submit(api, project, train, tags={"campaign": "Cu"})
    submit(api, project, train, tags={"campaign": "Ni"})

    cu = api.get("/jobs", params={"tag": "campaign=Cu"}, headers=project)
    both = api.get("/jobs", params=[("tag", "campaign=Cu"), ("tag", "kind=a")], headers=project)
    any_kind = api.get("/jobs", params={"tag": "kind"}, headers=project)
    cu_and_lora = api.get(
        "/jobs", params={"tag": "campaign=Cu", "strategy": "lora"}, headers=project
    )

    assert ids(cu) == [cu_naive["id"], cu_lora["id"]]
    assert ids(both) == [cu_lora["id"]]
    assert ids(any_kind) == [cu_lora["id"]]
    assert ids(cu_and_lora) == [cu_lora["id"]]


def test_every_list_answers_total_and_has_more_beside_its_page(api, project, train) -> None:
    jobs = [submit(api, project, train)["id"] for _ in range(3)]

    first = api.get("/jobs", params={"limit": 2}, headers=project).json()
    last = api.get("/jobs", params={"limit": 2, "offset": 2}, headers=project).json()

    assert [job["id"] for job in first["data"]] == jobs[::-1][:2]  # newest first
    assert (first["count"], first["total"], first["has_more"]) == (2, 3, True)
    assert [job["id"] for job in last["data"]] == [jobs[0]]
    assert (last["count"], last["total"], last["has_more"]) == (1, 3, False)
    for path in ("/datasets", "/sweeps", "/evaluations"):
        body = api.get(path, params={"limit": 1}, headers=project).json()
        assert {"data", "count", "total", "has_more"} <= set(body), path


def test_jobs_filter_by_state_strategy_foundation_and_name(api, project, train) -> None:
    lora = submit(api, project, train, strategy={"name": "lora"}, name="Cu LoRA 100%")
    naive = submit(api, project, train, name="cu naive")
    cancelled = api.post(f"/jobs/{naive['id']}/cancel", headers=project)
    assert cancelled.status_code == 200, cancelled.text

    def listed(**params) -> list[str]:
        return ids(api.get("/jobs", params=params, headers=project))

    assert listed(state="cancelled") == [naive["id"]]
    assert listed(state="queued") == [lora["id"]]
    assert listed(strategy="lora") == [lora["id"]]
    assert listed(foundation="mace-demo-emt") == [naive["id"], lora["id"]]
    assert listed(foundation="another-model") == []
    assert listed(name="cu naive") == [naive["id"]]
    assert listed(name_contains="LORA") == [lora["id"]]
    # The wildcards of SQL LIKE are plain characters in a filter.
    assert listed(name_contains="100%") == [lora["id"]]
    assert listed(name_contains="_") == []


def test_bad_filters_and_bad_tags_are_refused_naming_the_parameter(api, project, train) -> None:
    no_key = api.get("/jobs", params={"tag": "=Cu"}, headers=project)
    no_strategy = api.get("/jobs", params={"strategy": "sideways"}, headers=project)
    bad_key = api.post(
        "/jobs", json={"train_dataset": train, "tags": {"has space": "x"}}, headers=project
    )
    reserved = api.post(
        "/jobs", json={"train_dataset": train, "tags": {"mlft.job_id": "x"}}, headers=project
    )
    too_many = api.post(
        "/jobs",
        json={"train_dataset": train, "tags": {f"k{i}": "v" for i in range(33)}},
        headers=project,
    )
    blank_name = api.post("/jobs", json={"train_dataset": train, "name": "  "}, headers=project)

    assert (no_key.status_code, no_key.json()["code"], no_key.json()["param"]) == (
        422,
        "invalid_query",
        "tag",
    )
    assert (no_strategy.status_code, no_strategy.json()["param"]) == (422, "strategy")
    for refused in (bad_key, reserved, too_many):
        assert refused.status_code == 422, refused.text
        assert refused.json()["param"] == "tags"
    assert (blank_name.status_code, blank_name.json()["param"]) == (422, "name")


def test_a_sweep_is_named_and_tagged_and_so_are_its_jobs(api, project, train) -> None:
    spec = {
        "base": {"train_dataset": train, "tags": {"lr": "base"}},
        "strategies": ["naive", "lora"],
        "name": "cu strategies",
        "tags": {"campaign": "Cu", "lr": "sweep"},
    }
    sweep = api.post("/sweeps", json=spec, headers=project).json()
    other = api.post(
        "/sweeps", json={"base": {"train_dataset": train}, "strategies": ["naive"]}, headers=project
    ).json()

    listed = api.get("/sweeps", params={"tag": "campaign=Cu"}, headers=project).json()
    jobs = api.get("/jobs", params={"sweep": sweep["id"]}, headers=project).json()
    with_lora = api.get("/sweeps", params={"strategy": "lora"}, headers=project)
    named = api.get("/sweeps", params={"name": "cu strategies"}, headers=project)

    assert (sweep["name"], sweep["tags"]) == ("cu strategies", {"campaign": "Cu", "lr": "sweep"})
    assert [row["id"] for row in listed["data"]] == [sweep["id"]]
    assert (listed["total"], listed["has_more"]) == (1, False)
    assert listed["data"][0]["name"] == "cu strategies"
    assert jobs["total"] == 2
    # The base's tag wins over the sweep's; the rest are the sweep's.
    assert all(job["tags"] == {"campaign": "Cu", "lr": "base"} for job in jobs["data"])
    assert all(job["name"] == "cu strategies" for job in jobs["data"])
    assert ids(with_lora) == [sweep["id"]]
    assert ids(named) == [sweep["id"]]
    assert other["id"] in ids(api.get("/sweeps", params={"state": "queued"}, headers=project))


def test_evaluations_are_listed_and_filtered(api, project, train) -> None:
    spec = {"model": {"foundation_model": "mace-demo-emt"}, "dataset": train}
    evaluation = api.post("/evaluations", json=spec, headers=project)
    assert evaluation.status_code == 201, evaluation.text

    listed = api.get("/evaluations", headers=project).json()
    by_foundation = api.get("/evaluations", params={"foundation": "mace-demo-emt"}, headers=project)
    finished = api.get("/evaluations", params={"state": "succeeded"}, headers=project)

    assert [row["id"] for row in listed["data"]] == [evaluation.json()["id"]]
    assert (listed["total"], listed["has_more"]) == (1, False)
    assert ids(by_foundation) == [evaluation.json()["id"]]
    assert ids(finished) == []


def test_datasets_filter_by_name(api, project, train, target_files) -> None:
    with target_files["test"].open("rb") as stream:
        test = api.post("/datasets", files={"file": ("cu-test.extxyz", stream)}, headers=project)

    exact = api.get("/datasets", params={"name": "cu.extxyz"}, headers=project)
    partial = api.get("/datasets", params={"name_contains": "TEST"}, headers=project)

    assert ids(exact) == [train]
    assert ids(partial) == [test.json()["id"]]
    assert api.get("/datasets", headers=project).json()["total"] == 2


def test_a_nul_byte_in_a_filter_is_refused_not_sent_to_the_database(api, project) -> None:
    for params in ({"name": "a\x00"}, {"tag": "k\x00=v"}, {"foundation": "\x00"}):
        response = api.get("/jobs", params=params, headers=project)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "invalid_query"
