"""The random-structure-search hole test through the API and the real worker, kept tiny."""

import io
import time

import pytest
from ase.io import read

from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e

# One composition, two crystals, one pressure, a few FIRE steps: seconds, not the study's hours.
TINY = {
    "max_compositions": 1,
    "structures_per_composition": 2,
    "pressures_gpa": [0.1],
    "cycles": 1,
    "relax_steps": 5,
    "processes": 1,
}


def _wait_for_evaluation(client, evaluation_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (evaluation := client.get(f"/evaluations/{evaluation_id}").json())["state"] in {
        "queued",
        "running",
    }:
        assert time.monotonic() < deadline, evaluation
        time.sleep(1)
    return evaluation


@pytest.fixture(scope="module")
def rss_job(client, worker, settings, target_files) -> dict:
    spec = {
        "train_dataset": upload(client, target_files["train"])["id"],
        "test_dataset": upload(client, target_files["test"])["id"],
        "hyperparameters": {"max_num_epochs": 1, "batch_size": 10},
        "evaluation": {"md": False, "dimers": False, "rss_holes": TINY},
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = wait_for_job(client, created.json()["id"], settings.data_dir / "worker.log")
    assert job["state"] == "succeeded", job["error"]
    return job


def test_a_job_reports_its_hole_rate_beside_the_foundations(client, rss_job) -> None:
    job_id = rss_job["id"]

    rss = client.get(f"/jobs/{job_id}/metrics").json()["rss_holes"]
    report = client.get(f"/jobs/{job_id}/report").json()
    page = client.get(f"/jobs/{job_id}/report", params={"format": "html"}).text
    flagged = client.get(f"/jobs/{job_id}/rss-holes.extxyz")

    assert rss["compositions"] == ["C2O4"]  # the training data's most frequent stoichiometry
    for label in ("model", "foundation"):
        rates = rss["models"][label]["rates"]["0.1"]
        assert rates["structures"] == 2 and rates["relaxed"] + rates["failed"] == 2
    assert rss["models"]["foundation"]["name"] == "mace-demo-emt"
    assert report["rss_holes"]["structure_set"] == rss["structure_set"]
    assert "Random structure search" in page
    assert flagged.status_code == 200
    assert len(read(io.StringIO(flagged.text), index=":", format="extxyz")) == rss["flagged"]


def test_evaluating_the_jobs_model_again_reuses_both_relaxations(client, rss_job) -> None:
    job_metrics = client.get(f"/jobs/{rss_job['id']}/metrics").json()["rss_holes"]

    created = client.post(
        "/evaluations",
        json={
            "kind": "rss_holes",
            "model": {"job": rss_job["id"]},
            "settings": {"rss_holes": TINY},
        },
    )
    assert created.status_code == 201, created.text
    evaluation = _wait_for_evaluation(client, created.json()["id"])

    assert evaluation["state"] == "succeeded", evaluation["error"]
    rss = evaluation["report"]["rss_holes"]
    assert rss["structure_set"] == job_metrics["structure_set"]
    assert rss["models"]["model"]["cached"] and rss["models"]["foundation"]["cached"]
    assert rss["models"]["model"]["rates"] == job_metrics["models"]["model"]["rates"]
    assert set(evaluation["report"]) == {"rss_holes"}
    download = client.get(f"/evaluations/{evaluation['id']}/rss-holes.extxyz")
    assert download.status_code == 200


def test_an_unmodified_foundation_on_named_compositions(client, worker) -> None:
    created = client.post(
        "/evaluations",
        json={
            "kind": "rss_holes",
            "model": {"foundation_model": "mace-demo-emt"},
            "settings": {"rss_holes": TINY | {"compositions": ["Cu2"], "pressures_gpa": [0.1, 50]}},
        },
    )
    assert created.status_code == 201, created.text
    evaluation = _wait_for_evaluation(client, created.json()["id"])

    assert evaluation["state"] == "succeeded", evaluation["error"]
    rss = evaluation["report"]["rss_holes"]
    assert set(rss["models"]) == {"model"}  # nothing to compare a foundation with
    assert set(rss["models"]["model"]["rates"]) == {"0.1", "50"}
    assert rss["models"]["model"]["rates"]["50"]["compositions"]["Cu2"]["structures"] == 2


@pytest.mark.parametrize(
    ("rss_settings", "message"),
    [
        ({"compositions": ["Xx2"]}, "unknown element"),
        ({"compositions": ["Na2Cl2"]}, "does not know element(s) Cl, Na"),
        ({}, "needs compositions"),
    ],
)
def test_bad_rss_requests_are_refused(client, rss_settings, message) -> None:
    response = client.post(
        "/evaluations",
        json={
            "kind": "rss_holes",
            "model": {"foundation_model": "mace-demo-emt"},
            "settings": {"rss_holes": rss_settings},
        },
    )

    assert response.status_code == 422
    assert message in response.text


def test_a_standard_evaluation_still_needs_a_dataset(client) -> None:
    response = client.post("/evaluations", json={"model": {"foundation_model": "mace-demo-emt"}})

    assert response.status_code == 422 and "needs a dataset" in response.text


def test_a_job_naming_compositions_its_model_will_not_know_is_refused(client, target_files) -> None:
    train = upload(client, target_files["train"])["id"]
    # The delivered model knows the foundation's elements (the demo's metals among them) unless
    # the spec keeps only the training elements; Xe it never knows.
    outside_training = {
        "train_dataset": train,
        "elements": "training",
        "evaluation": {"rss_holes": {"compositions": ["Cu4"]}},
    }
    outside_foundation = {
        "train_dataset": train,
        "evaluation": {"rss_holes": {"compositions": ["Xe4"]}},
    }

    for spec, element in ((outside_training, "Cu"), (outside_foundation, "Xe")):
        response = client.post("/jobs", json=spec)
        assert response.status_code == 422 and element in response.text, response.text
