"""The server's own entry point (`python -m api`, installed as `mlft-server`) serves the API that
the separately distributed client talks to."""

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.service import running_api
from mlft_client.cli import main


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[str]:
    """`python -m api` on the test database and broker (so no embedded worker starts)."""
    data_dir = tmp_path_factory.mktemp("server-command")
    env = {
        **os.environ,
        "DATABASE_URL": settings.resolved_database_url,
        "BROKER_URL": settings.broker_url,
        "MLFT_DATA_DIR": str(data_dir),
    }
    with running_api(["-m", "api"], env, Path(data_dir) / "api.log") as api:
        yield api.url


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
