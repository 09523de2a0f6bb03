"""The embedded default: no database or broker configured, one process command, a real worker."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def embedded_service(tmp_path: Path, demo_foundation: Path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "BROKER_URL", "MLFT_DATABASE_URL", "MLFT_BROKER_URL"}
    }
    env["MLFT_DATA_DIR"] = str(tmp_path / "var")
    env["MLFT_MODELS_DIR"] = str(demo_foundation.parent)
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/health").raise_for_status()
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp_path / "api.log").read_text()[-3000:])
            time.sleep(0.5)
    yield client, tmp_path / "var"
    client.close()
    process.terminate()
    process.wait(timeout=60)
    log.close()


def test_embedded_service_runs_a_job_on_sqlite_and_a_folder_broker(
    embedded_service, target_files
) -> None:
    client, data_dir = embedded_service
    train = upload(client, target_files["train"])

    job_id = client.post(
        "/jobs",
        json={"train_dataset": train["id"], "hyperparameters": {"max_num_epochs": 1}},
    ).json()["id"]
    job = wait_for_job(client, job_id, data_dir / "logs" / "worker.log")

    assert job["state"] == "succeeded", job["error"]
    assert (data_dir / "mlft.sqlite").is_file()
    assert client.get(f"/jobs/{job_id}/model").content[:2] == b"PK"
