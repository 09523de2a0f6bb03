"""Issue 17 item 9: a status read of a job does not load the heavy parts of its row (the learning
curve, the split, the measured metrics and model card) unless asked, and its progress stays
right without them. SQL is captured on the real PostgreSQL engine the API uses."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, update

from core.service.jobs import get_job, record_epoch
from core.service.models import Job
from core.workflows.checkpoints import _keep_epochs_before
from tests.conftest import upload

HEAVY_COLUMNS = ("epochs", "split", "metrics", "model_card")
# A column selected for its value; `model_card IS NOT NULL` (has_model_card) reads no card.
SELECTED = {column: re.compile(rf"\bjobs\.{column}\b(?! IS NOT NULL)") for column in HEAVY_COLUMNS}
EPOCHS = [
    {"epoch": None, "head": "target", "valid_energy_rmse_mev_per_atom": 9.0},
    {"epoch": 0, "head": "target", "valid_energy_rmse_mev_per_atom": 5.0},
    {"epoch": 0, "head": "replay", "valid_energy_rmse_mev_per_atom": 7.0},
    {"epoch": 1, "head": "target", "valid_energy_rmse_mev_per_atom": 4.0},
    {"epoch": 1, "head": "replay", "valid_energy_rmse_mev_per_atom": 6.0},
]
SPLIT = {"train": list(range(30)), "valid": [30, 31], "test": [], "counts": {"train": 30}}


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


@pytest.fixture()
def trained_job(client, app, train_id) -> str:
    """A queued job whose row holds two trained epochs of a replay job, a split and metrics."""
    job_id = client.post("/jobs", json={"train_dataset": train_id}).json()["id"]
    with app.state.context.sessions() as session:
        for entry in EPOCHS:
            record_epoch(session, job_id, entry)
        session.execute(
            update(Job).where(Job.id == job_id).values(split=SPLIT, metrics={"accuracy": {}})
        )
        session.commit()
    yield job_id
    client.post(f"/jobs/{job_id}/cancel")


@contextmanager
def statements(app) -> Iterator[list[str]]:
    """Every SQL statement the API's engine sends meanwhile."""
    engine = app.state.context.sessions.kw["bind"]
    sent: list[str] = []

    def capture(_connection, _cursor, statement, _parameters, _context, _many) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def heavy_columns_in(sent: list[str]) -> set[str]:
    return {
        column
        for column, selected in SELECTED.items()
        for statement in sent
        if selected.search(statement)
    }


def test_a_status_read_loads_neither_epochs_nor_split_nor_measurements(
    client, app, trained_job
) -> None:
    with statements(app) as sent:
        response = client.get(f"/jobs/{trained_job}")

    assert response.status_code == 200
    job = response.json()
    assert any("FROM jobs" in statement for statement in sent), sent
    assert heavy_columns_in(sent) == set()
    assert job["epochs"] is None and job["split"] is None
    # The progress comes from the summary columns: two epochs trained, the newest record of
    # the fine-tuned head (not the replay head, logged after it).
    assert job["progress"]["epochs_done"] == 2
    assert job["progress"]["latest"] == EPOCHS[3]


def test_the_job_list_loads_no_heavy_part_either(client, app, trained_job) -> None:
    with statements(app) as sent:
        response = client.get("/jobs")

    listed = {job["id"]: job for job in response.json()["data"]}
    assert heavy_columns_in(sent) == set()
    assert listed[trained_job]["progress"]["epochs_done"] == 2
    assert listed[trained_job]["epochs"] is None


def test_epochs_and_split_are_read_when_asked_for_in_one_query(client, app, trained_job) -> None:
    with statements(app) as sent:
        job = client.get(f"/jobs/{trained_job}?include=epochs&include=split").json()

    assert job["epochs"] == EPOCHS
    assert job["split"] == SPLIT
    job_queries = [statement for statement in sent if "FROM jobs" in statement]
    assert len(job_queries) == 1 and heavy_columns_in(job_queries) == {"epochs", "split"}


def test_an_unknown_part_to_include_is_a_422(client, trained_job) -> None:
    response = client.get(f"/jobs/{trained_job}?include=metrics")
    assert response.status_code == 422


def test_the_summary_follows_epochs_dropped_for_a_resumed_run(app, trained_job) -> None:
    with app.state.context.sessions() as session:
        # A worker died; its successor restarts at epoch 1, dropping that epoch's records.
        _keep_epochs_before(session, trained_job, 1)
        job = get_job(session, trained_job, include=("epochs",))

        assert [entry["epoch"] for entry in job.epochs] == [None, 0, 0]
        assert job.epochs_done == 1
        assert job.latest_epoch == EPOCHS[1]


def test_a_status_read_shows_the_verdicts_without_loading_the_metrics(
    client, app, trained_job
) -> None:
    # Issue 25: the MD verdict says how long its runs lasted beside the study's.
    md = {"label": "MD stable", "value": "yes, 100 K over 0.1 of 250 ps", "level": "good"}
    with app.state.context.sessions() as session:
        session.execute(update(Job).where(Job.id == trained_job).values(verdicts=[md]))
        session.commit()

    with statements(app) as sent:
        job = client.get(f"/jobs/{trained_job}").json()

    assert job["verdicts"] == [md]
    assert heavy_columns_in(sent) == set()
