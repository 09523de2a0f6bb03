"""The local topology (bench/topology.py) for these tests: one API, two training workers (`gpu`
queue) and an evaluation worker (`cpu` queue) as in docker-compose.yml, each with its own data
folder under a temporary root, on their own PostgreSQL database, the test Redis and moto's S3.

Its own database and queues: the other packages' workers and leftover rows never meet it.
"""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from bench.topology import Topology, prepare_database, register_foundation
from core.data.demo_data import generate_target_dataset, write_extxyz
from tests.conftest import TEST_DATABASE_URL

GPU_QUEUE = "topology-gpu"
CPU_QUEUE = "topology-cpu"
ADMIN_TOKEN = "topology-admin-token"
# Short, so that a killed worker's job counts as abandoned seconds later; long enough that a
# worker on a shared machine of 2 cores (load 20 seen) renews it in time: at 4 s, live workers
# lost their jobs to the sweep, and the same training ran three times.
LEASE_SECONDS = 15
TERMINAL = {"succeeded", "failed", "cancelled"}
HYPERPARAMETERS = {"max_num_epochs": 1, "batch_size": 5}
QUICK_EVALUATION = {"md": False, "dimers": False}
# Generous: on a shared machine of 2 cores one epoch may take minutes.
JOB_TIMEOUT_S = 900


@pytest.fixture(scope="package")
def topology(tmp_path_factory, demo_foundation: Path) -> Iterator[Topology]:
    url = make_url(TEST_DATABASE_URL)
    database_url = url.set(database=f"{url.database}_topo").render_as_string(hide_password=False)
    prepare_database(database_url, fresh=True)
    root = tmp_path_factory.mktemp("topology")
    topology = Topology(
        root,
        database_url=database_url,
        broker_url=os.environ["BROKER_URL"],
        overrides={
            "MLFT_GPU_QUEUE": GPU_QUEUE,
            "MLFT_CPU_QUEUE": CPU_QUEUE,
            "MLFT_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "MLFT_ADMIN_TOKEN": ADMIN_TOKEN,
        },
    )
    _purge_queues(os.environ["BROKER_URL"])
    topology.start({"worker-gpu-1": ["gpu"], "worker-gpu-2": ["gpu"], "worker-cpu": ["cpu"]})
    # The one way a foundation reaches the workers: the admin registers it on the API.
    register_foundation(topology.api_url, ADMIN_TOKEN, demo_foundation.stem, demo_foundation)
    yield topology
    topology.stop()


def _purge_queues(broker_url: str) -> None:
    from core.config import Settings
    from worker.celery_app import make_celery

    settings = Settings(broker_url=broker_url, gpu_queue=GPU_QUEUE, cpu_queue=CPU_QUEUE)
    make_celery(settings).control.purge()


@pytest.fixture(scope="package")
def admin(topology: Topology) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=topology.api_url, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="package")
def client(topology: Topology, admin: httpx.Client) -> Iterator[httpx.Client]:
    """A project's client, as a researcher uses the service."""
    with project_client(topology.api_url, admin, "topology") as client:
        yield client


def project_client(api_url: str, admin: httpx.Client, name: str) -> httpx.Client:
    project = admin.post("/projects", json={"name": name}).json()
    token = admin.post(f"/projects/{project['id']}/tokens", json={"name": "tests"}).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    return httpx.Client(base_url=api_url, headers=headers, timeout=120)


def upload_datasets(client: httpx.Client, folder: Path) -> dict[str, str]:
    """A small training and test set of molecules, uploaded; their ids by role."""
    files = {
        "train": write_extxyz(
            generate_target_dataset(20, seed=1, system="molecules"), folder / "train.extxyz"
        ),
        "test": write_extxyz(
            generate_target_dataset(6, seed=2, system="molecules"), folder / "test.extxyz"
        ),
    }
    ids = {}
    for role, path in files.items():
        with path.open("rb") as stream:
            response = client.post("/datasets", files={"file": (path.name, stream)})
        assert response.status_code == 201, response.text
        ids[role] = response.json()["id"]
    return ids


def job_spec(datasets: dict[str, str], epochs: int = 1, **extra: object) -> dict:
    return {
        "train_dataset": datasets["train"],
        "test_dataset": datasets["test"],
        "hyperparameters": {**HYPERPARAMETERS, "max_num_epochs": epochs},
        "evaluation": QUICK_EVALUATION,
        **extra,
    }


def submit(client: httpx.Client, path: str, body: dict) -> str:
    response = client.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def worker_running(topology: Topology, job_id: str) -> str | None:
    """The worker whose data folder holds the job's working folder (mace trains in it)."""
    for name, process in topology.processes.items():
        folder = process.data_dir
        if name.startswith("worker-") and folder and (folder / "work" / job_id).exists():
            return name
    return None


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.3)
    return value


def wait_until_ended(client: httpx.Client, path: str, topology: Topology, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (body := client.get(path).json())["state"] not in TERMINAL:
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {name}\n{process.log_tail(2000)}"
                for name, process in topology.processes.items()
            )
            pytest.fail(f"{path} still {body['state']} after {timeout} s\n{logs}")
        time.sleep(0.5)
    return body
