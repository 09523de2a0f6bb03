"""The server's own entry point (`python -m api`, installed as `mlft-server`) serves the API that
the separately distributed client talks to."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.service import free_port
from mlft_client.cli import main
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[str]:
    """`python -m api` on the test database and broker (so no embedded worker starts)."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("server-command")
    env = {
        **os.environ,
        "DATABASE_URL": settings.resolved_database_url,
        "BROKER_URL": settings.broker_url,
        "MLFT_DATA_DIR": str(data_dir),
    }
    log_path = Path(data_dir) / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_python_m_api_serves_the_api_on_the_given_host_and_port(server: str) -> None:
    response = httpx.get(f"{server}/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "mlft"


def test_the_mlft_command_talks_to_the_server_started_by_its_entry_point(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--url", server, "jobs", "list"])

    assert status == 0
    assert capsys.readouterr().err == ""
