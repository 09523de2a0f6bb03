"""Tokens and projects: a project's objects are invisible to every other project's token."""

import logging
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete, func

from api.routes import events as events_route
from core.artifacts.storage_keys import foundation_key
from core.registry.foundations import file_sha256
from core.service.models import ApiToken, FoundationRecord

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
METRICS_TOKEN = "test-metrics-token"
# Project A's dataset file name: no answer to project B may contain it.
SECRET_NAME = "project-a-secret-train.extxyz"
UNKNOWN_ID = "0" * 32


@pytest.fixture(scope="module")
def secured_app(settings, demo_foundation):
    from api.app import create_app

    secured = settings.model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN), "metrics_token": SecretStr(METRICS_TOKEN)}
    )
    return create_app(secured, start_worker=False, enqueue=lambda _job_id: None)


@pytest.fixture(scope="module")
def api(secured_app) -> Iterator[TestClient]:
    with TestClient(secured_app) as test_client:
        yield test_client


def project_headers(api: TestClient) -> dict[str, str]:
    name = f"lab-{uuid.uuid4().hex[:8]}"
    project = api.post("/projects", json={"name": name}, headers=ADMIN)
    assert project.status_code == 201, project.text
    issued = api.post(f"/projects/{project.json()['id']}/tokens", json={"name": "t"}, headers=ADMIN)
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['token']}"}


@pytest.fixture(scope="module")
def project_a(api) -> dict[str, str]:
    return project_headers(api)


@pytest.fixture(scope="module")
def project_b(api) -> dict[str, str]:
    return project_headers(api)


@pytest.fixture(scope="module")
def objects_of_a(api, project_a, target_files) -> dict[str, str]:
    """One of each kind of object, created with project A's token."""
    with target_files["train"].open("rb") as stream:
        dataset = api.post("/datasets", files={"file": (SECRET_NAME, stream)}, headers=project_a)
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    job = api.post("/jobs", json={"train_dataset": dataset_id}, headers=project_a)
    assert job.status_code == 201, job.text
    evaluation = api.post(
        "/evaluations",
        json={"model": {"foundation_model": "mace-demo-emt"}, "dataset": dataset_id},
        headers=project_a,
    )
    assert evaluation.status_code == 201, evaluation.text
    sweep = api.post(
        "/sweeps",
        json={"base": {"train_dataset": dataset_id}, "strategies": ["naive"]},
        headers=project_a,
    )
    assert sweep.status_code == 201, sweep.text
    replay_set = api.post(
        "/replay-sets",
        json={"train_dataset": dataset_id, "size": 5, "sources": ["rattle"]},
        headers=project_a,
    )
    assert replay_set.status_code == 201, replay_set.text
    return {
        "replay_set_id": replay_set.json()["id"],
        "dataset_id": dataset_id,
        "dataset_sha256": dataset.json()["sha256"],
        "job_id": job.json()["id"],
        "evaluation_id": evaluation.json()["id"],
        "sweep_id": sweep.json()["id"],
    }


def test_requests_without_a_valid_token_get_401(api) -> None:
    assert api.get("/jobs").status_code == 401
    assert api.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert "token" in api.get("/datasets").json()["detail"]


def test_health_and_schema_need_no_token(api) -> None:
    assert api.get("/health").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_project_tokens_cannot_manage_projects(api, project_a) -> None:
    assert api.post("/projects", json={"name": "mine"}, headers=project_a).status_code == 403
    assert api.get("/projects", headers=project_a).status_code == 403


def test_the_admin_token_reads_no_project_data(api) -> None:
    response = api.get("/datasets", headers=ADMIN)
    assert response.status_code == 403
    assert "project token" in response.json()["detail"]


def test_tokens_are_stored_hashed_and_can_be_revoked(api, settings) -> None:
    project = api.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    issued = api.post(
        f"/projects/{project.json()['id']}/tokens", json={"name": "ci"}, headers=ADMIN
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert api.get("/jobs", headers=headers).status_code == 200

    from core.service.db import session_factory

    with session_factory(settings.resolved_database_url)() as session:
        row = session.get(ApiToken, issued["id"])
        assert row is not None and issued["token"] not in row.token_hash
        assert len(row.token_hash) == 64

    revoked = api.delete(f"/projects/{project.json()['id']}/tokens/{issued['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert api.get("/jobs", headers=headers).status_code == 401


def test_a_token_seen_valid_is_not_looked_up_again_until_its_cache_time_is_up(
    api, secured_app, settings, monkeypatch
) -> None:
    from sqlalchemy import event, update

    from core.service.db import session_factory

    project = api.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    issued = api.post(
        f"/projects/{project.json()['id']}/tokens", json={"name": "ci"}, headers=ADMIN
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    cache = secured_app.state.token_cache
    now = [1000.0]
    monkeypatch.setattr(cache, "clock", lambda: now[0])
    engine = secured_app.state.context.sessions.kw["bind"]
    lookups: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if "FROM api_tokens" in statement:
            lookups.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        first = api.get("/jobs", headers=headers)
        second = api.get("/jobs", headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # Revoked by another API process: this one's cache does not know, until its time is up.
    with session_factory(settings.resolved_database_url)() as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == issued["id"]).values(revoked_at=func.now())
        )
        session.commit()
    now[0] += secured_app.state.settings.token_cache_seconds + 0.1

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(lookups) == 1
    assert api.get("/jobs", headers=headers).status_code == 401


def test_duplicate_project_names_conflict(api) -> None:
    name = f"dup-{uuid.uuid4().hex[:8]}"
    assert api.post("/projects", json={"name": name}, headers=ADMIN).status_code == 201
    again = api.post("/projects", json={"name": name}, headers=ADMIN)
    assert again.status_code == 409 and name in again.json()["detail"]


def _object_routes(app) -> list[tuple[str, str, bool]]:
    """(method, path, has a request body) of every documented route with a path parameter."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if "{" in path:
            for method, operation in operations.items():
                routes.append((method.upper(), path, "requestBody" in operation))
    return routes


def _reveals_nothing_of_a(response, objects_of_a: dict[str, str]) -> bool:
    return not any(
        secret in response.text for secret in (objects_of_a["dataset_sha256"], SECRET_NAME)
    )


def test_every_object_of_project_a_is_404_for_project_b(
    api, secured_app, project_a, project_b, objects_of_a
) -> None:
    checked = []
    for method, path, has_body in _object_routes(secured_app):
        names = re.findall(r"{(\w+)}", path)
        if not set(names) <= set(objects_of_a):
            continue
        url = path.format(**objects_of_a)
        owner = api.request(method, url, headers=project_a)
        other = api.request(method, url, headers=project_b)
        assert owner.status_code != 404 or method != "GET", f"{method} {url}: {owner.text}"
        # A request with a body may fail its validation first, which reveals nothing either.
        allowed = {404, 422} if has_body else {404}
        assert other.status_code in allowed, f"{method} {path}: {other.status_code} {other.text}"
        assert _reveals_nothing_of_a(other, objects_of_a), f"{method} {path}: {other.text}"
        checked.append(f"{method} {path}")
    assert len(checked) >= 10, checked


@pytest.fixture(scope="module")
def dataset_of_b(api, project_b, target_files) -> str:
    with target_files["test"].open("rb") as stream:
        dataset = api.post("/datasets", files={"file": ("b.extxyz", stream)}, headers=project_b)
    assert dataset.status_code == 201, dataset.text
    return dataset.json()["id"]


def _bodies_naming(dataset: str, job: str, own: str) -> list[tuple[str, dict]]:
    """(route, body) for every place a request body names a dataset or a job: `dataset` and
    `job` are the names under test, `own` a dataset of the caller's for the other roles."""
    replay = {"dataset": dataset}
    job_specs = [
        {"train_dataset": dataset},
        {"train_dataset": own, "valid_dataset": dataset},
        {"train_dataset": own, "test_dataset": dataset},
        {"train_dataset": own, "isolated_atoms_dataset": dataset, "e0s": "isolated_atoms"},
        {"train_dataset": own, "strategy": {"name": "multihead_replay", "replay": replay}},
        {"train_dataset": own, "evaluation": {"replay_dataset": dataset}},
        {"train_dataset": own, "evaluation": {"reference_dataset": dataset}},
    ]
    demo = {"foundation_model": "mace-demo-emt"}
    reference = {"reference_dataset": dataset}
    bodies = [(route, spec) for spec in job_specs for route in ("/jobs", "/preflight")]
    # A sweep's strategies replace its base's (and with it the base's replay dataset).
    bodies += [
        ("/sweeps", {"base": spec, "strategies": ["naive"]})
        for spec in job_specs
        if "strategy" not in spec
    ]
    bodies += [
        (
            "/sweeps",
            {
                "base": {"train_dataset": own},
                "strategies": ["multihead_replay"],
                "replay": {"dataset": dataset},
            },
        ),
        ("/evaluations", {"model": demo, "dataset": dataset}),
        ("/evaluations", {"model": {"job": job}, "dataset": own}),
        ("/evaluations", {"model": demo, "dataset": own, "settings": {"replay_dataset": dataset}}),
        ("/evaluations", {"model": demo, "dataset": own, "settings": reference}),
        ("/evaluations", {"kind": "rss_holes", "model": {"job": job}}),
        ("/evaluations", {"kind": "rss_holes", "model": demo, "dataset": dataset}),
        ("/replay-sets", {"train_dataset": dataset, "size": 5, "sources": ["rattle"]}),
        ("/replay-sets", {"elements": ["Cu"], "pool_datasets": [dataset], "sources": []}),
    ]
    return bodies


# Project routes whose bodies name no stored object (an upload is a new object; a promotion's
# body is the new foundation's name, its job is in the path, which the test above walks).
BODIES_WITHOUT_IDS = {"POST /datasets", "POST /jobs/{job_id}/promote"}


def test_project_b_naming_project_a_ids_in_a_body_gets_the_answer_for_an_unknown_id(
    api, secured_app, project_b, objects_of_a, dataset_of_b
) -> None:
    dataset, job = objects_of_a["dataset_id"], objects_of_a["job_id"]
    bodies = _bodies_naming(dataset, job, dataset_of_b)
    unknown = _bodies_naming(UNKNOWN_ID, UNKNOWN_ID, dataset_of_b)
    for (route, body), (_, unknown_body) in zip(bodies, unknown, strict=True):
        other = api.post(route, json=body, headers=project_b)
        baseline = api.post(route, json=unknown_body, headers=project_b)

        assert other.status_code in {404, 422}, f"{route} {body}: {other.text}"
        assert _reveals_nothing_of_a(other, objects_of_a), f"{route} {body}: {other.text}"
        # Not even whether the id exists: the same answer as for an id that never did.
        masked = other.text.replace(dataset, UNKNOWN_ID).replace(job, UNKNOWN_ID)
        assert (other.status_code, masked) == (baseline.status_code, baseline.text), route

    # Every route that takes a JSON body in a project is walked above (or names no object).
    walked = {f"POST {route}" for route, _ in bodies} | BODIES_WITHOUT_IDS
    for path, operations in secured_app.openapi()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation and not path.startswith(("/projects", "/foundation")):
                assert f"{method.upper()} {path}" in walked, f"{method} {path} is not walked"


def test_listings_show_only_the_callers_objects(api, project_a, project_b, objects_of_a) -> None:
    listings = (("/datasets", "dataset_id"), ("/jobs", "job_id"), ("/replay-sets", "replay_set_id"))
    for listing, key in listings:
        theirs = api.get(listing, headers=project_b).json()
        mine = api.get(listing, headers=project_a).json()
        assert objects_of_a[key] not in {item["id"] for item in theirs["data"]}
        assert objects_of_a[key] in {item["id"] for item in mine["data"]}


def test_project_b_cannot_train_on_project_a_data(api, project_b, objects_of_a) -> None:
    response = api.post(
        "/jobs", json={"train_dataset": objects_of_a["dataset_id"]}, headers=project_b
    )
    assert response.status_code == 422
    assert "does not exist" in response.json()["detail"]


def test_only_admins_register_foundation_models_pinned_by_sha256(
    api, secured_app, project_a, demo_foundation: Path, settings, objects_of_a, tmp_path
) -> None:
    name = f"lab-model-{uuid.uuid4().hex[:8]}"
    # A model file of its own (torch.save names the archive after the file): tampering with its
    # stored copy below must not touch the demo foundation's.
    upload = tmp_path / f"{name}.model"
    torch.save(torch.load(demo_foundation, weights_only=False), upload)
    with upload.open("rb") as stream:
        refused = api.post(
            "/foundation-models",
            data={"name": name},
            files={"file": ("m.model", stream)},
            headers=project_a,
        )
    assert refused.status_code == 403

    with upload.open("rb") as stream:
        registered = api.post(
            "/foundation-models",
            data={"name": name},
            files={"file": ("m.model", stream)},
            headers=ADMIN,
        )
    assert registered.status_code == 201, registered.text
    sha256 = registered.json()["sha256"]  # of the safe form the service keeps
    assert registered.json()["upload_sha256"] == file_sha256(upload)
    # Registration puts the safe form in artifact storage, keyed by its hash, not in the models
    # folder.
    assert not (settings.resolved_models_dir / f"{name}.model").exists()
    assert not (settings.resolved_models_dir / f"{name}.safetensors").exists()
    storage = secured_app.state.context.storage
    stored_file = storage.local_path(foundation_key(sha256))
    try:
        names = [item["name"] for item in api.get("/foundation-models", headers=project_a).json()]
        assert name in names
        with stored_file.open("ab") as stream:
            stream.write(b"tampered")
        response = api.post(
            "/jobs",
            json={"train_dataset": objects_of_a["dataset_id"], "foundation_model": name},
            headers=project_a,
        )
        assert response.status_code == 503
        assert "changed since it was registered" in response.json()["detail"]
    finally:
        storage.delete(foundation_key(sha256))
        with secured_app.state.context.sessions() as session:
            session.execute(delete(FoundationRecord).where(FoundationRecord.name == name))
            session.commit()


def test_junk_registered_as_a_foundation_model_is_refused_and_leaves_nothing(
    api, settings, tmp_path
) -> None:
    before = sorted(p.name for p in settings.resolved_models_dir.iterdir())
    for content in (b"not a model at all", b"PK\x03\x04 a broken zip"):
        response = api.post(
            "/foundation-models",
            data={"name": "junk-model"},
            files={"file": ("junk.model", content)},
            headers=ADMIN,
        )
        assert response.status_code == 422, response.text
        assert "not a PyTorch model archive" in response.json()["detail"]

    assert sorted(p.name for p in settings.resolved_models_dir.iterdir()) == before
    listed = api.get("/foundation-models", headers=ADMIN).json()
    assert "junk-model" not in [model["name"] for model in listed]


@pytest.mark.parametrize("name", ["../evil", "a/b", "x\x00y", ".."])
def test_a_foundation_model_cannot_be_registered_under_a_path(api, demo_foundation, name) -> None:
    response = api.post(
        "/foundation-models",
        data={"name": name},
        files={"file": ("m.model", b"irrelevant")},
        headers=ADMIN,
    )

    assert response.status_code == 422, response.text


def test_nul_bytes_in_project_and_token_names_get_422(api) -> None:
    assert api.post("/projects", json={"name": "lab\x00"}, headers=ADMIN).status_code == 422
    project = api.post("/projects", json={"name": f"n-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    url = f"/projects/{project.json()['id']}/tokens"
    assert api.post(url, json={"name": "\x00"}, headers=ADMIN).status_code == 422
    assert api.delete(f"{url}/%00", headers=ADMIN).status_code == 404


def _token_of_a_new_project(api) -> tuple[str, str, str]:
    project = api.post("/projects", json={"name": f"s-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    project_id = project.json()["id"]
    issued = api.post(f"/projects/{project_id}/tokens", json={"name": "t"}, headers=ADMIN).json()
    return project_id, issued["id"], issued["token"]


def test_access_token_in_the_query_is_taken_by_the_event_stream_only(api, target_files) -> None:
    _, _, token = _token_of_a_new_project(api)
    headers = {"Authorization": f"Bearer {token}"}
    with target_files["train"].open("rb") as stream:
        dataset = api.post("/datasets", files={"file": ("t.extxyz", stream)}, headers=headers)
    job = api.post("/jobs", json={"train_dataset": dataset.json()["id"]}, headers=headers).json()
    api.post(f"/jobs/{job['id']}/cancel", headers=headers)

    assert api.get("/jobs", params={"access_token": token}).status_code == 401
    assert api.get(f"/jobs/{job['id']}", params={"access_token": token}).status_code == 401
    streamed = api.get(f"/jobs/{job['id']}/events", params={"access_token": token})
    assert streamed.status_code == 200
    assert "cancelled" in streamed.text


def test_access_tokens_never_reach_the_access_log(secured_app, caplog) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/jobs/abc/events?log=true&access_token=mlft_s3cret-Token_x&x=1",
        "1.1",
        200,
    )

    assert "mlft_s3cret" not in caplog.text
    assert "access_token=[redacted]&x=1" in caplog.text


def test_an_open_event_stream_ends_when_its_token_is_revoked(
    api, target_files, monkeypatch
) -> None:
    monkeypatch.setattr(events_route, "TOKEN_RECHECK_SECONDS", 0.2)
    monkeypatch.setattr(events_route, "KEEPALIVE_SECONDS", 0.1)
    project_id, token_id, token = _token_of_a_new_project(api)
    headers = {"Authorization": f"Bearer {token}"}
    with target_files["train"].open("rb") as stream:
        dataset = api.post("/datasets", files={"file": ("t.extxyz", stream)}, headers=headers)
    job = api.post("/jobs", json={"train_dataset": dataset.json()["id"]}, headers=headers).json()
    lines: list[str] = []
    streaming = threading.Event()

    def follow() -> None:
        with api.stream("GET", f"/jobs/{job['id']}/events", headers=headers) as response:
            for line in response.iter_lines():
                lines.append(line)
                streaming.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert streaming.wait(timeout=20), "the stream did not start"
    revoked = api.delete(f"/projects/{project_id}/tokens/{token_id}", headers=ADMIN)
    follower.join(timeout=20)

    assert revoked.status_code == 200
    assert not follower.is_alive(), "the stream kept going after its token was revoked"
    assert "event: error" in lines and any("revoked" in line for line in lines)


def test_metrics_need_the_admin_or_the_metrics_token(api, project_a) -> None:
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers=project_a).status_code == 403
    for token in (ADMIN_TOKEN, METRICS_TOKEN):
        response = api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert "mlft_jobs" in response.text
