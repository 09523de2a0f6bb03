"""The evaluation stage of a job and POST /evaluations, through the real worker."""

import time

import pytest

from core.data.demo_data import write_extxyz
from tests.conftest import upload
from tests.e2e.conftest import wait_for_job
from tests.e2e.test_strategies import replay_structures

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def evaluated_job(client, worker, settings, target_files, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("evaluation")
    replay = upload(client, write_extxyz(replay_structures(12), folder / "replay.extxyz"))["id"]
    spec = {
        "train_dataset": upload(client, target_files["train"])["id"],
        "test_dataset": upload(client, target_files["test"])["id"],
        "hyperparameters": {"max_num_epochs": 2, "batch_size": 10},
        # 100 MD steps per run (issue 21's md_steps): the default 400 takes minutes on a busy CPU.
        "evaluation": {"replay_dataset": replay, "md_steps": 100},
    }
    job_id = client.post("/jobs", json=spec).json()["id"]
    job = wait_for_job(client, job_id, settings.data_dir / "worker.log")
    assert job["state"] == "succeeded", job["error"]
    return job


def test_a_job_reports_accuracy_forgetting_md_rdf_and_repulsion(client, evaluated_job) -> None:
    metrics = client.get(f"/jobs/{evaluated_job['id']}/metrics").json()

    test = metrics["accuracy"]["test"]
    assert test["forces_rmse_mev_per_a"] > 0 and test["per_config_type"]
    assert len(test["parity"]["forces"]["reference"]) == len(test["parity"]["forces"]["predicted"])
    assert metrics["forgetting"]["force_rmse_ratio"] > 0
    assert {run["run"] for run in metrics["md"]} == {"constant_100K", "ramp_50_800K"}
    assert all(run["survived_ps"] > 0 for run in metrics["md"])
    assert metrics["rdf"]["pairs"] and all(
        pair["emd"] is None or pair["emd"] >= 0 for pair in metrics["rdf"]["pairs"].values()
    )
    elements = {"H", "C", "N", "O"}
    assert len(metrics["dimers"]["pairs"]) == len(elements) * (len(elements) + 1) // 2
    # Issue 21: what the report and the sweeps need is stored by the evaluation itself.
    assert metrics["forgetting"]["energy_offset_removed"]["ratio"] > 0
    assert isinstance(metrics["dimers"]["foundation_holes"], list)
    for run in metrics["md"]:
        assert 2 <= len(run["time_ps"]) == len(run["temperature_K"]) == len(run["energy_ev"])


def test_the_report_is_json_and_a_page_with_figures(client, evaluated_job) -> None:
    job_id = evaluated_job["id"]

    report = client.get(f"/jobs/{job_id}/report").json()
    page = client.get(f"/jobs/{job_id}/report", params={"format": "html"})

    assert report["job"]["id"] == job_id and report["learning_curve"]
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count("<img") >= 5
    assert "Molecular dynamics" in page.text
    assert "MD traces" in page.text  # drawn from the stored traces (issue 21)


def test_the_unmodified_foundation_is_evaluated_on_the_same_test_set(client, evaluated_job) -> None:
    test_dataset = evaluated_job["spec"]["test_dataset"]
    created = client.post(
        "/evaluations",
        json={
            "model": {"foundation_model": "mace-demo-emt"},
            "dataset": test_dataset,
            "settings": {"md": False, "dimers": False},
        },
    )
    assert created.status_code == 201, created.text
    evaluation_id = created.json()["id"]
    deadline = time.monotonic() + 300
    while (evaluation := client.get(f"/evaluations/{evaluation_id}").json())["state"] in {
        "queued",
        "running",
    }:
        assert time.monotonic() < deadline
        time.sleep(1)

    assert evaluation["state"] == "succeeded", evaluation["error"]
    foundation = evaluation["report"]["accuracy"]["test"]
    job = client.get(f"/jobs/{evaluated_job['id']}/metrics").json()["accuracy"]["test"]
    # The test data sit at another level of theory: fine-tuning must have helped.
    assert job["energy_rmse_mev_per_atom"] < foundation["energy_rmse_mev_per_atom"]
    html = client.get(f"/evaluations/{evaluation_id}/report", params={"format": "html"}).text
    assert "<img" in html


def test_evaluating_an_unfinished_or_missing_job_is_refused(client, evaluated_job) -> None:
    response = client.post(
        "/evaluations", json={"model": {"job": "missing"}, "dataset": "whatever"}
    )
    assert response.status_code == 422


def test_the_report_of_a_finished_job_fits_the_report_model(client, evaluated_job) -> None:
    # Issue 19 item 3: what the OpenAPI document promises is what a finished job sends.
    from core.reporting.report_models import JobReport, undeclared_keys

    report = client.get(f"/jobs/{evaluated_job['id']}/report").json()
    parsed = JobReport.model_validate(report)

    assert undeclared_keys(parsed) == []
    assert parsed.to_json() == report
    assert parsed.accuracy and parsed.md and parsed.dimers and parsed.e0s and parsed.checks
