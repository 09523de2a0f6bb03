"""api/routes/jobs.py's downloads and renderings on a finished job whose artifacts are put in
storage directly (training itself is e2e's): each sends what is stored under its key, and a
missing one is a 409 (the job exists, the file does not) that says why."""

from pathlib import Path

import pytest
from sqlalchemy import update

from core.artifacts.storage_keys import (
    EXPORT_FILES,
    RSS_FLAGGED_FILE,
    job_artifact_key,
    mace_log_key,
    model_key,
)
from core.service.jobs import transition
from core.service.models import Job, JobState
from tests.conftest import upload

CARD = {"foundation_model": {"name": "mace-demo-emt"}, "strategy": {"name": "naive"}}


@pytest.fixture()
def finished_job(client, app, target_files, tmp_path: Path) -> str:
    job_id = client.post(
        "/jobs", json={"train_dataset": upload(client, target_files["train"])["id"]}
    ).json()["id"]
    storage = app.state.context.storage
    for key, content in (
        (model_key(job_id), b"model"),
        (job_artifact_key(job_id, EXPORT_FILES["torchscript"]), b"torchscript"),
        (mace_log_key(job_id), b"epoch 1\n"),
        (job_artifact_key(job_id, RSS_FLAGGED_FILE), b"1\n\nH 0 0 0\n"),
    ):
        source = tmp_path / key.replace("/", "_")
        source.write_bytes(content)
        storage.put_file(key, source)
    torchscript = {"ok": True, "key": job_artifact_key(job_id, EXPORT_FILES["torchscript"])}
    lammps = {"ok": False, "key": None, "error": "no LAMMPS build"}
    with app.state.context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
        transition(
            session, job_id, JobState.RUNNING, JobState.SUCCEEDED, model_key=model_key(job_id)
        )
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                exports={"torchscript": torchscript, "lammps": lammps},
                model_card=CARD,
                metrics={},
            )
        )
        session.commit()
    return job_id


@pytest.mark.parametrize(
    ("path", "content", "filename"),
    [
        ("/model", b"model", "mlft-{id}.model"),
        ("/model?variant=torchscript", b"torchscript", "mlft-{id}-torchscript.pt"),
        ("/log", b"epoch 1\n", "mlft-{id}-training.log"),
        ("/rss-holes.extxyz", b"1\n\nH 0 0 0\n", "mlft-{id}-rss-holes.extxyz"),
    ],
)
def test_each_download_sends_what_is_stored_under_its_key(
    client, finished_job: str, path: str, content: bytes, filename: str
) -> None:
    response = client.get(f"/jobs/{finished_job}{path}")

    assert response.status_code == 200
    assert response.content == content
    assert filename.format(id=finished_job) in response.headers["content-disposition"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/model?variant=lammps", "has no lammps export: no LAMMPS build"),
        ("/model?variant=multihead", "has no multihead model; only replay strategies train one"),
    ],
)
def test_a_missing_download_is_refused_saying_why(
    client, finished_job: str, path: str, reason: str
) -> None:
    response = client.get(f"/jobs/{finished_job}{path}")

    assert response.status_code == 409
    assert reason in response.json()["detail"]


def test_the_card_and_the_report_answer_as_json_or_rendered(client, finished_job: str) -> None:
    card = client.get(f"/jobs/{finished_job}/model-card")
    card_md = client.get(f"/jobs/{finished_job}/model-card", params={"format": "md"})
    report = client.get(f"/jobs/{finished_job}/report")
    page = client.get(f"/jobs/{finished_job}/report", params={"format": "html"})

    assert card.json() == CARD
    assert card_md.headers["content-type"].startswith("text/markdown")
    assert "mace-demo-emt" in card_md.text
    assert report.headers["content-type"] == "application/json"
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!DOCTYPE html>")
