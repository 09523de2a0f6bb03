"""The server's own entry point (`python -m api`, installed as `mlft-server`) serves the API that
the separately distributed client talks to, in one process per core (issue 26: here told 2)."""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.api_load import descendant_pids
from bench.service import SERVER_VARIABLES, ApiProcess, running_api
from mlft_client.cli import main

API_PROCESSES = 2


def api_processes_started(api: ApiProcess) -> list[int]:
    """The pids uvicorn logged as its API processes ("Started server process [pid]")."""
    log = api.log_path.read_text(errors="replace")
    return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)]


def every_process_ready(api: ApiProcess) -> bool:
    log = api.log_path.read_text(errors="replace")
    return log.count("Application startup complete") >= API_PROCESSES


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[ApiProcess]:
    """`python -m api --workers 2` on the test database and broker (so no embedded worker)."""
    data_dir = tmp_path_factory.mktemp("server-command")
    env = {
        **os.environ,
        "DATABASE_URL": settings.resolved_database_url,
        "BROKER_URL": settings.broker_url,
        "MLFT_DATA_DIR": str(data_dir),
    }
    args = ["-m", "api", "--workers", str(API_PROCESSES)]
    with running_api(args, env, Path(data_dir) / "api.log", ready=every_process_ready) as api:
        yield api


def test_python_m_api_serves_the_api_on_the_given_host_and_port(server: ApiProcess) -> None:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "mlft"


def test_the_server_runs_the_api_processes_it_was_told_to(server: ApiProcess) -> None:
    started = api_processes_started(server)

    assert len(started) == API_PROCESSES
    assert set(started) <= set(descendant_pids(server.popen.pid))
    answers = [httpx.get(f"{server.url}/health", timeout=10).status_code for _ in range(20)]
    assert answers == [200] * 20


def test_the_mlft_command_talks_to_the_server_started_by_its_entry_point(
    server: ApiProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--url", server.url, "jobs", "list"])

    assert status == 0
    assert capsys.readouterr().err == ""


def test_the_embedded_service_in_several_processes_starts_one_local_worker(
    demo_foundation, tmp_path
) -> None:
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    env |= {"MLFT_DATA_DIR": str(tmp_path), "MLFT_MODELS_DIR": str(demo_foundation.parent)}
    args = ["-m", "api", "--workers", str(API_PROCESSES)]

    with running_api(args, env, tmp_path / "api.log", ready=every_process_ready) as api:
        workers = [
            pid
            for pid in descendant_pids(api.popen.pid)
            if "celery" in command_line(pid) and "worker" in command_line(pid)
        ]
        jobs = httpx.get(f"{api.url}/jobs", timeout=10)

    assert len(api_processes_started(api)) == API_PROCESSES
    assert len(workers) == 1
    assert jobs.status_code == 200
