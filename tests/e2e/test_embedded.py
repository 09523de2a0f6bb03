"""The embedded default: no database or broker configured, one process command, a real worker."""

import pytest

from bench.service import embedded_service, wait_for
from tests.conftest import upload

pytestmark = pytest.mark.e2e


def test_embedded_service_runs_a_job_on_sqlite_and_a_folder_broker(
    tmp_path, demo_foundation, target_files
) -> None:
    data_dir = tmp_path / "var"
    with embedded_service(data_dir, demo_foundation.parent) as client:
        train = upload(client, target_files["train"])
        job_id = client.post(
            "/jobs",
            json={
                "train_dataset": train["id"],
                "hyperparameters": {"max_num_epochs": 1},
                "evaluation": {"md": False, "dimers": False},
            },
        ).json()["id"]

        job = wait_for(client, f"/jobs/{job_id}", timeout=600)

        assert job["state"] == "succeeded", job["error"]
        assert (data_dir / "mlft.sqlite").is_file()
        assert client.get(f"/jobs/{job_id}/model").content[:2] == b"PK"
