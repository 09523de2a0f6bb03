"""No stranded work (issue 17, item 7): with the broker unreachable, submissions answer 503 with
Retry-After and their rows stay queued; the dispatch sweeper sends them once the broker is back
(here the real Redis test broker), and cancel routes stop evaluations, replay sets and sweeps."""

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.service.dispatch import resend_lost, resend_undispatched
from core.service.models import Evaluation, Job, JobState, ReplaySet, utcnow
from tests.conftest import upload

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
# Queues of their own, so that no worker of another test package takes these messages.
GPU_QUEUE = "dispatch-test-gpu"
CPU_QUEUE = "dispatch-test-cpu"


@pytest.fixture(scope="module")
def broker_down_client(settings, demo_foundation) -> Iterator[TestClient]:
    from api.app import create_app

    down = settings.model_copy(update={"broker_url": UNREACHABLE_BROKER})
    with TestClient(create_app(down, start_worker=False)) as client:
        yield client


@pytest.fixture(scope="module")
def train_id(broker_down_client, target_files) -> str:
    return upload(broker_down_client, target_files["train"])["id"]


@pytest.fixture()
def broker_back(settings):
    """A sender to the real test broker, on this module's queues, and a way to read them."""
    from worker.celery_app import make_celery
    from worker.tasks import TASK_BY_KIND

    queues = {"gpu_queue": GPU_QUEUE, "cpu_queue": CPU_QUEUE}
    celery = make_celery(settings.model_copy(update=queues))
    celery.control.purge()
    connection = redis.Redis.from_url(settings.broker_url)

    def send(kind: str, row_id: str) -> None:
        celery.send_task(TASK_BY_KIND[kind], args=[row_id])

    def messages() -> list[bytes]:
        return [*connection.lrange(GPU_QUEUE, 0, -1), *connection.lrange(CPU_QUEUE, 0, -1)]

    yield send, messages
    connection.delete(GPU_QUEUE, CPU_QUEUE)


def refused(client: TestClient, path: str, body: dict, noun: str) -> str:
    """POST while the broker is away: 503 with Retry-After; returns the id the message names."""
    started = time.monotonic()
    response = client.post(path, json=body)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    detail = response.json()["detail"]
    assert "broker" in detail and "sent automatically" in detail
    # The broker client gives up quickly: a submission does not hang for long.
    assert time.monotonic() - started < 30
    return re.search(rf"{noun} ([0-9a-f]{{32}})", detail).group(1)


def test_a_job_submitted_while_the_broker_is_down_is_sent_by_the_sweeper_once_it_is_back(
    broker_down_client, app, train_id, broker_back
) -> None:
    send, messages = broker_back
    job_id = refused(broker_down_client, "/jobs", {"train_dataset": train_id}, "job")
    sessions = app.state.context.sessions

    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.state is JobState.QUEUED and job.enqueued_at is None

        # Still down: the sweeper cannot send it either and leaves it for its next round.
        def still_down(_kind: str, _row_id: str) -> None:
            raise ConnectionRefusedError("broker down")

        with pytest.raises(ConnectionRefusedError):
            resend_undispatched(session, grace_seconds=0, send=still_down)
        session.expire_all()
        assert session.get(Job, job_id).enqueued_at is None

        # Within the grace period the API may still be sending it: the sweeper waits.
        assert ("job", job_id) not in resend_undispatched(session, grace_seconds=3600, send=send)

        sent = resend_undispatched(session, grace_seconds=0, send=send)

        assert ("job", job_id) in sent
        session.expire_all()
        assert session.get(Job, job_id).enqueued_at is not None
        assert session.get(Job, job_id).state is JobState.QUEUED
        # Sent once: the next round finds nothing left to send for it.
        assert ("job", job_id) not in resend_undispatched(session, grace_seconds=0, send=send)
    assert sum(job_id.encode() in message for message in messages()) == 1


def test_a_queued_row_sent_before_the_broker_restarted_is_sent_again_once(
    broker_down_client, app, train_id, broker_back
) -> None:
    """Issue 26: a broker that restarts without its messages (Redis without its append-only
    file) loses the tasks of queued rows; the sweeper sends them again, once per restart."""
    send, messages = broker_back
    job_id = refused(broker_down_client, "/jobs", {"train_dataset": train_id}, "job")
    sent_at = utcnow() - timedelta(minutes=5)

    with app.state.context.sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=sent_at))
        session.commit()
        # A broker running since before the row was sent still holds its task.
        running_since = sent_at - timedelta(hours=1)
        kept = resend_lost(session, broker_started_at=running_since, send=send)
        # Restarted since; the sweeps after it (seconds later) find the row sent already.
        restarted_at = utcnow()
        sent = resend_lost(session, broker_started_at=restarted_at, send=send)
        again = resend_lost(session, broker_started_at=restarted_at, send=send)

    assert ("job", job_id) not in kept
    assert ("job", job_id) in sent
    assert ("job", job_id) not in again
    assert sum(job_id.encode() in message for message in messages()) == 1


def test_evaluations_and_replay_sets_submitted_while_the_broker_is_down_get_503_and_stay_queued(
    broker_down_client, app, train_id, broker_back
) -> None:
    send, messages = broker_back
    evaluation_id = refused(
        broker_down_client,
        "/evaluations",
        {"model": {"foundation_model": "mace-demo-emt"}, "dataset": train_id},
        "evaluation",
    )
    replay_set_id = refused(
        broker_down_client,
        "/replay-sets",
        {"train_dataset": train_id, "size": 7, "seed": 17},
        "replay set",
    )

    with app.state.context.sessions() as session:
        for table, row_id in ((Evaluation, evaluation_id), (ReplaySet, replay_set_id)):
            assert session.get(table, row_id).state is JobState.QUEUED
        sent = resend_undispatched(session, grace_seconds=0, send=send)

    assert {("evaluation", evaluation_id), ("replay_set", replay_set_id)} <= set(sent)
    assert any(evaluation_id.encode() in message for message in messages())
    assert any(replay_set_id.encode() in message for message in messages())


def test_a_sweep_submitted_while_the_broker_is_down_gets_503_naming_the_sweep(
    broker_down_client, app, train_id
) -> None:
    body = {"base": {"train_dataset": train_id}, "strategies": ["naive", "lora"]}

    sweep_id = refused(broker_down_client, "/sweeps", body, "sweep")

    with app.state.context.sessions() as session:
        jobs = session.query(Job).filter(Job.sweep_id == sweep_id).all()
    assert len(jobs) == 2 and all(job.state is JobState.QUEUED for job in jobs)
    # Cancelled, so that no later worker's sweeper sends them to train.
    assert broker_down_client.post(f"/sweeps/{sweep_id}/cancel").json()["jobs"] == {"cancelled": 2}


def test_cancel_routes_stop_queued_evaluations_replay_sets_and_whole_sweeps(
    client, target_files
) -> None:
    train = upload(client, target_files["train"])["id"]
    evaluation = client.post(
        "/evaluations", json={"model": {"foundation_model": "mace-demo-emt"}, "dataset": train}
    ).json()
    replay_set = client.post(
        "/replay-sets", json={"train_dataset": train, "size": 9, "seed": 23}
    ).json()
    sweep = client.post(
        "/sweeps", json={"base": {"train_dataset": train}, "strategies": ["naive", "lora"]}
    ).json()

    for path in (f"/evaluations/{evaluation['id']}", f"/replay-sets/{replay_set['id']}"):
        cancelled = client.post(f"{path}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        assert client.get(path).json()["state"] == "cancelled"
        assert client.post(f"{path}/cancel").status_code == 409
    cancelled_sweep = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert cancelled_sweep.status_code == 200, cancelled_sweep.text
    assert cancelled_sweep.json()["jobs"] == {"cancelled": 2}
    job_ids = [row["job_id"] for row in cancelled_sweep.json()["table"]]
    assert {client.get(f"/jobs/{job_id}").json()["state"] for job_id in job_ids} == {"cancelled"}
    # A cancelled replay set is not handed back: the same request builds it anew.
    again = client.post("/replay-sets", json={"train_dataset": train, "size": 9, "seed": 23})
    assert again.status_code == 201 and again.json()["id"] != replay_set["id"]
    for path in ("/evaluations/missing/cancel", "/replay-sets/missing/cancel", "/sweeps/x/cancel"):
        assert client.post(path).status_code == 404


def test_an_evaluation_runs_under_a_lease_that_is_released_when_it_ends(
    client, app, target_files
) -> None:
    from core.workflows.evaluations import execute_evaluation

    test_set = upload(client, target_files["test"])["id"]
    created = client.post(
        "/evaluations",
        json={
            "model": {"foundation_model": "mace-demo-emt"},
            "dataset": test_set,
            "settings": {"md": False, "dimers": False},
        },
    ).json()

    state = execute_evaluation(app.state.context, created["id"])
    again = execute_evaluation(app.state.context, created["id"])

    assert state is again is JobState.SUCCEEDED
    with app.state.context.sessions() as session:
        evaluation = session.get(Evaluation, created["id"])
        assert evaluation.attempts == 1 and evaluation.lease_owner is None
        assert evaluation.enqueued_at is not None
        assert evaluation.report["accuracy"]["test"]
