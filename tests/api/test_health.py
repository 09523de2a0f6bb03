"""Liveness, readiness with its reasons, and the Prometheus metrics, against the real services."""

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.db import session_factory
from core.jobs import create_job, record_epoch
from core.models import Dataset, new_id


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_liveness_answers_without_looking_at_dependencies(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readiness_checks_database_broker_and_storage(client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


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
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["storage"] == "ok"
    assert body["checks"]["database"] != "ok"
    assert body["checks"]["broker"] != "ok"


def test_metrics_report_jobs_by_state_queue_depth_and_epoch_times(client, settings) -> None:
    from worker.celery_app import make_celery

    before = samples(client.get("/metrics").text)
    with session_factory(settings.resolved_database_url)() as session:
        dataset = Dataset(id=new_id(), name="d", storage_key="k", sha256="0" * 64, summary={})
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
