"""First start (issue 16): the API answers at once while the demo foundation builds in the
background; the registry lists it as building with its progress, and jobs naming it get 503."""

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.foundations import building_marker, mark_building
from tests.conftest import FOUNDATIONS_DIR, upload


@pytest.fixture()
def being_built(tmp_path) -> Path:
    """A model this process is building, two epochs into twelve."""
    model = FOUNDATIONS_DIR / "being-built-test.model"
    results = tmp_path / "results"
    results.mkdir()
    (results / "demo_run-0_train.txt").write_text(
        "\n".join(json.dumps({"mode": "eval", "epoch": epoch}) for epoch in (None, 0, 1)) + "\n"
    )
    mark_building(building_marker(model), tmp_path, max_epochs=12)
    yield model
    building_marker(model).unlink(missing_ok=True)


def test_a_model_being_built_is_listed_with_its_progress_and_jobs_naming_it_get_503(
    client, being_built, target_files
) -> None:
    train = upload(client, target_files["train"])["id"]

    listed = {item["name"]: item for item in client.get("/foundation-models").json()}
    refused = client.post(
        "/jobs", json={"train_dataset": train, "foundation_model": "being-built-test"}
    )

    assert listed["being-built-test"]["status"] == "building"
    assert listed["being-built-test"]["available"] is False
    assert listed["being-built-test"]["progress"]["epochs_done"] == 2
    assert listed["being-built-test"]["progress"]["max_epochs"] == 12
    assert listed["mace-demo-emt"]["status"] == "ready"
    assert refused.status_code == 503
    assert "is being built (epoch 2/12" in refused.json()["detail"]


def test_a_build_whose_process_died_is_not_listed(client, being_built) -> None:
    marker = building_marker(being_built)
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps({**state, "pid": _dead_pid()}))

    names = {item["name"] for item in client.get("/foundation-models").json()}

    assert "being-built-test" not in names


def test_the_embedded_api_answers_at_once_and_builds_the_missing_demo_foundation(
    settings, tmp_path
) -> None:
    from api.app import create_app

    # A first start indeed: the embedded default's SQLite, not the tests' database, whose
    # foundation registry already holds the demo model.
    fresh = settings.model_copy(
        update={
            "broker_url": None,
            "database_url": None,
            "data_dir": tmp_path / "var",
            "models_dir": tmp_path / "models",
        }
    )
    started = time.monotonic()
    with TestClient(create_app(fresh, start_worker=True)) as client:
        answered = client.get("/healthz").status_code == 200
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 180
        demo: dict = {}
        while time.monotonic() < deadline and demo.get("status") != "building":
            listed = {item["name"]: item for item in client.get("/foundation-models").json()}
            demo = listed.get("mace-demo-emt", {})
            time.sleep(1)

    assert answered and seconds < 60
    assert demo.get("status") == "building", demo
    assert demo["progress"]["max_epochs"] > 0
    # Stopping the API stops the build: the next start builds again.
    assert not (tmp_path / "models" / "mace-demo-emt.model").exists()


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
