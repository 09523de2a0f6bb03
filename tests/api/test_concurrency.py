"""Steady under concurrent requests (issue 17, item 9): requests wait for a database connection
or get 503 with Retry-After, never 500; a status read does not load the heavy parts of a job."""

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from bench.service import running_api
from core.service.db import session_factory
from core.service.jobs import create_job
from core.service.models import Dataset, JobState
from core.service.scoping import scope_session
from tests.rows import dataset_summary

ADMIN_TOKEN = "concurrency-admin-token"
CONCURRENT_REQUESTS = 200
# Far fewer connections than concurrent requests: they must queue for them, not fail.
TINY_POOL = {"MLFT_DB_POOL_SIZE": "2", "MLFT_DB_MAX_OVERFLOW": "1"}


def stored_job(sessions, project_id: str, **values) -> str:
    """A cancelled job row of the project, written directly (job submission is tested elsewhere;
    cancelled, so that no worker's sweeper in a later test sends it to train)."""
    with sessions() as session:
        scope_session(session, project_id)
        dataset = Dataset(
            name="load.extxyz",
            storage_key="datasets/none/load.extxyz",
            sha256="0" * 64,
            summary=dataset_summary(),
        )
        session.add(dataset)
        session.flush()
        spec = {"train_dataset": dataset.id, "hyperparameters": {"max_num_epochs": 1}}
        job = create_job(session, spec, dataset.id)
        job.state = JobState.CANCELLED
        for name, value in values.items():
            setattr(job, name, value)
        session.commit()
        return job.id


def test_reading_a_job_does_not_load_its_metrics_or_model_card(app, client) -> None:
    sessions = app.state.context.sessions
    heavy = {"rdf": {"pairs": {f"pair{i}": list(range(2000)) for i in range(50)}}}
    job_id = stored_job(sessions, "default", metrics=heavy, model_card={"card": "x" * 10_000})
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(f"/jobs/{job_id}")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert response.status_code == 200, response.text
    assert response.json()["model_card_url"] == f"/jobs/{job_id}/model-card"
    reads = [statement for statement in statements if "FROM jobs" in statement]
    assert reads
    for statement in reads:
        assert "jobs.metrics" not in statement
        assert "jobs.model_card" not in statement.replace("jobs.model_card IS NOT NULL", "")
    # Asked for, they are there.
    assert client.get(f"/jobs/{job_id}/model-card").json() == {"card": "x" * 10_000}


def test_a_request_that_finds_no_free_connection_in_time_gets_503_with_retry_after(
    settings, demo_foundation
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    one_connection = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2}
    )
    app = create_app(one_connection, start_worker=False)
    # Held outside the request gate, as an event stream's poll holds one.
    with app.state.context.sessions() as holder, TestClient(app) as client:
        holder.connection()
        response = client.get("/jobs")

    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0


@pytest.fixture(scope="module")
def tiny_pool_server(settings, demo_foundation, tmp_path_factory) -> Iterator[str]:
    """The API under uvicorn, auth on, PostgreSQL, with a database pool of three connections."""
    data_dir = tmp_path_factory.mktemp("tiny-pool")
    env = {
        **os.environ,
        **TINY_POOL,
        "DATABASE_URL": settings.resolved_database_url,
        "MLFT_DATA_DIR": str(data_dir),
        "MLFT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    command = ["-m", "uvicorn", "api.app:create_app", "--factory"]
    with running_api(command, env, Path(data_dir) / "api.log") as api:
        yield api.url


def project_token(base: str) -> tuple[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    project = httpx.post(
        f"{base}/projects", json={"name": f"load-{time.time_ns()}"}, headers=admin
    ).json()
    issued = httpx.post(
        f"{base}/projects/{project['id']}/tokens", json={"name": "load"}, headers=admin
    ).json()
    return project["id"], issued["token"]


async def concurrent_reads(base: str, path: str, token: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers, timeout=60) as c:
        return await asyncio.gather(*(c.get(path) for _ in range(count)))


def test_concurrent_reads_far_beyond_the_pool_all_succeed_and_none_gets_a_5xx(
    tiny_pool_server, settings
) -> None:
    project_id, token = project_token(tiny_pool_server)
    job_id = stored_job(session_factory(settings.resolved_database_url), project_id)

    responses = asyncio.run(
        concurrent_reads(tiny_pool_server, f"/jobs/{job_id}", token, CONCURRENT_REQUESTS)
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: CONCURRENT_REQUESTS}, statuses
    assert {response.json()["id"] for response in responses} == {job_id}


async def reads_beside_open_event_streams(base: str, job_id: str, token: str) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        streams = [client.stream("GET", f"/jobs/{job_id}/events") for _ in range(OPEN_STREAMS)]
        opened = [await stream.__aenter__() for stream in streams]
        try:
            assert all(response.status_code == 200 for response in opened)
            reads = [await client.get(f"/jobs/{job_id}") for _ in range(3)]
        finally:
            for stream in streams:
                await stream.__aexit__(None, None, None)
    return [read.status_code for read in reads]


OPEN_STREAMS = 5  # more than the tiny pool's three connections


def test_open_event_streams_do_not_hold_database_connections_from_other_requests(
    tiny_pool_server, settings
) -> None:
    project_id, token = project_token(tiny_pool_server)
    job_id = stored_job(session_factory(settings.resolved_database_url), project_id)

    statuses = asyncio.run(reads_beside_open_event_streams(tiny_pool_server, job_id, token))

    assert statuses == [200, 200, 200]
