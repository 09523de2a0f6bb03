"""First start (issue 16): the API answers at once while the demo foundation builds in the
background; the registry lists it as building with its progress, and jobs naming it get 503."""

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.registry.foundations import building_marker, mark_building
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
    assert refused.json()["code"] == "foundation_building"
    assert int(refused.headers["Retry-After"]) > 0


def test_a_build_whose_process_died_is_not_listed(client, being_built) -> None:
    marker = building_marker(being_built)
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps({**state, "pid": _dead_pid()}))

    names = {item["name"] for item in client.get("/foundation-models").json()}

    assert "being-built-test" not in names


def _fresh(settings, tmp_path):
    # A first start indeed: the embedded default's SQLite, not the tests' database, whose
    # foundation registry already holds the demo model.
    return settings.model_copy(
        update={
            "broker_url": None,
            "database_url": None,
            "data_dir": tmp_path / "var",
            "models_dir": tmp_path / "models",
        }
    )


def test_the_embedded_api_installs_the_shipped_demo_foundation_at_once(settings, tmp_path) -> None:
    from api.app import create_app
    from core.science.demo_foundation import SHIPPED_DEMO_SHA256

    started = time.monotonic()
    with TestClient(create_app(_fresh(settings, tmp_path), start_worker=True)) as client:
        seconds = time.monotonic() - started
        listed = {item["name"]: item for item in client.get("/foundation-models").json()}

    assert seconds < 60
    assert listed["mace-demo-emt"]["status"] == "ready"
    pin = tmp_path / "models" / "mace-demo-emt.model.sha256"
    assert pin.read_text().strip() == SHIPPED_DEMO_SHA256


def test_a_demo_foundation_failing_its_pin_is_built_in_the_background_while_the_api_answers(
    settings, tmp_path, monkeypatch
) -> None:
    from api.app import create_app
    from core.science import demo_foundation

    # A shipped file that does not match its pin (edited, or truncated by a checkout).
    monkeypatch.setattr(demo_foundation, "SHIPPED_DEMO_SHA256", "0" * 64)
    fresh = _fresh(settings, tmp_path)
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
