"""Liveness, readiness with its reasons, and the Prometheus metrics, against the real services."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker

from core.service.db import session_factory
from core.service.heartbeats import WorkerIdentity, beat
from core.service.jobs import create_job, record_epoch
from core.service.models import Dataset, WorkerHeartbeat, new_id, utcnow
from tests.rows import dataset_summary


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_liveness_answers_without_looking_at_dependencies(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.fixture()
def no_heartbeats(settings) -> Iterator[sessionmaker]:
    """No worker has a heartbeat row; rows the test writes are removed afterwards."""
    sessions = session_factory(settings.resolved_database_url)
    with sessions() as session:
        session.execute(delete(WorkerHeartbeat))
        session.commit()
    yield sessions
    with sessions() as session:
        session.execute(delete(WorkerHeartbeat))
        session.commit()


def test_readiness_checks_database_broker_storage_and_a_live_worker(client, no_heartbeats) -> None:
    with no_heartbeats() as session:
        beat(session, WorkerIdentity("test-host:1", "test-host", 1, "gpu,cpu"))

    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok", "workers": "ok"},
    }


def test_readiness_says_no_worker_alive_when_no_heartbeat_is_within_the_lease(
    client, settings, no_heartbeats
) -> None:
    stale = utcnow() - timedelta(seconds=settings.job_lease_seconds + 5)
    with no_heartbeats() as session:
        session.add(
            WorkerHeartbeat(
                worker_id="dead:2",
                hostname="dead",
                pid=2,
                queues="gpu",
                started_at=stale,
                last_seen_at=stale,
            )
        )
        session.commit()

    response = client.get("/readyz")
    without_workers = client.get("/readyz", params={"workers": "false"})

    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["checks"]["workers"].startswith("no worker alive")
    assert response.json()["checks"]["database"] == "ok"
    assert without_workers.status_code == 200, without_workers.text
    assert "workers" not in without_workers.json()["checks"]


def test_readiness_is_503_naming_each_unreachable_dependency(settings, app) -> None:
    from api.app import create_app

    broken = settings.model_copy(
        update={
            "broker_url": "redis://127.0.0.1:1/0",
            "database_url": "postgresql+psycopg://postgres@127.0.0.1:1/nothing",
        }
    )
    response = TestClient(create_app(broken, start_worker=False)).get("/readyz")

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["storage"] == "ok"
    assert body["checks"]["database"] != "ok"
    assert body["checks"]["broker"] != "ok"


def test_metrics_report_jobs_by_state_queue_depth_and_epoch_times(client, settings) -> None:
    from worker.celery_app import make_celery

    before = samples(client.get("/metrics").text)
    with session_factory(settings.resolved_database_url)() as session:
        dataset = Dataset(
            id=new_id(), name="d", storage_key="k", sha256="0" * 64, summary=dataset_summary()
        )
        session.add(dataset)
        session.flush()
        job = create_job(session, {"hyperparameters": {"max_num_epochs": 2}}, dataset.id)
        session.commit()
        record_epoch(session, job.id, {"epoch": 0, "head": "target", "seconds": 2.5})
    make_celery(settings).send_task("mlft.run_job", args=["no-such-job"])

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    queued = ("mlft_jobs", (("state", "queued"),))
    assert after[queued] == before[queued] + 1
    states = ("running", "succeeded", "failed")
    assert {("mlft_jobs", (("state", state),)) for state in states} <= set(after)
    depth = ("mlft_queue_depth", (("queue", settings.gpu_queue),))
    assert after[depth] == before.get(depth, 0) + 1
    assert ("mlft_queue_depth", (("queue", settings.cpu_queue),)) in after
    count = ("mlft_epoch_seconds_count", ())
    assert after[count] == before[count] + 1
    five = ("mlft_epoch_seconds_bucket", (("le", "5.0"),))
    one = ("mlft_epoch_seconds_bucket", (("le", "1.0"),))
    assert after[five] - before[five] == 1
    assert after[one] == before[one]
