"""The embedded supervisor: its Celery worker SIGKILLed in the middle of a job's evaluation is
restarted (and says so in the log), and the job ends instead of staying `running`."""

import logging
import signal
import sys

import pytest
from fastapi.testclient import TestClient

from core.service.leases import exhausted_reason
from tests.conftest import upload
from tests.recovery.conftest import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals"),
]
LEASE_SECONDS = 3


@pytest.fixture()
def embedded_settings(settings, tmp_path):
    # The embedded default (a folder broker, a supervised local worker) on the test database, in
    # a data folder of its own so no other worker shares its queues.
    return settings.model_copy(
        update={
            "broker_url": None,
            "data_dir": tmp_path / "embedded",
            "job_lease_seconds": LEASE_SECONDS,
            # One attempt: the job then fails with the reason as soon as its lease expires,
            # instead of running its training and evaluation again (the resume itself is
            # test_crash_recovery's).
            "max_attempts": 1,
        }
    )


def stage_of(client: TestClient, job_id: str) -> str:
    return client.get(f"/jobs/{job_id}").json()["progress"]["stage"] or ""


def test_a_worker_killed_mid_evaluation_is_restarted_and_its_job_ends(
    embedded_settings, demo_foundation, target_files, caplog
) -> None:
    from api.app import create_app

    caplog.set_level(logging.WARNING, logger="worker.local")
    app = create_app(embedded_settings, start_worker=True)
    with TestClient(app) as client:
        supervisor = app.state.worker_supervisor
        wait_until(
            lambda: client.get("/readyz").status_code == 200, 120, "the worker's first heartbeat"
        )
        train = upload(client, target_files["train"])["id"]
        test = upload(client, target_files["test"])["id"]
        response = client.post(
            "/jobs",
            json={
                "train_dataset": train,
                "test_dataset": test,
                "hyperparameters": {"max_num_epochs": 1, "batch_size": 8},
            },
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        wait_until(
            lambda: stage_of(client, job_id).startswith(("evaluating", "md ")),
            600,
            "the job's evaluation stage",
        )
        first = supervisor.process
        first.send_signal(signal.SIGKILL)
        first.wait()

        wait_until(
            lambda: supervisor.restarts >= 1 and supervisor.process.pid != first.pid,
            60,
            "the supervisor to restart the worker",
        )
        done = wait_until(
            lambda: (
                (body := client.get(f"/jobs/{job_id}").json())["state"] not in {"queued", "running"}
                and body
            ),
            600,
            "the job to end",
        )

    assert any("died" in r.message and str(first.pid) in r.message for r in caplog.records)
    assert any("restarted" in r.message for r in caplog.records)
    assert done["state"] == "failed"
    assert done["error"] == exhausted_reason(1)


def test_readiness_says_no_worker_alive_once_the_embedded_worker_is_gone(
    embedded_settings, demo_foundation
) -> None:
    from api.app import create_app
    from core.service.db import session_factory
    from core.service.heartbeats import alive_workers

    app = create_app(embedded_settings, start_worker=True)
    with TestClient(app) as client:
        wait_until(
            lambda: client.get("/readyz").status_code == 200, 120, "the worker's first heartbeat"
        )
    # The supervisor stopped its worker with the app, and the worker removed its heartbeat at
    # once (a killed worker's row ages out instead).
    with session_factory(embedded_settings.resolved_database_url)() as session:
        assert alive_workers(session, LEASE_SECONDS) == []
    with TestClient(create_app(embedded_settings, start_worker=False)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["workers"].startswith("no worker alive")
