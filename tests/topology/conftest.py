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
from tests.conftest import TEST_DATABASE_URL

GPU_QUEUE = "topology-gpu"
CPU_QUEUE = "topology-cpu"
ADMIN_TOKEN = "topology-admin-token"
# Short, so that a killed worker's job counts as abandoned seconds later; long enough that a
# worker on a shared machine of 2 cores (load 20 seen) renews it in time: at 4 s, live workers
# lost their jobs to the sweep, and the same training ran three times.
LEASE_SECONDS = 15
TERMINAL = {"succeeded", "failed", "cancelled"}


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
    project = admin.post("/projects", json={"name": "topology"}).json()
    token = admin.post(f"/projects/{project['id']}/tokens", json={"name": "tests"}).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    with httpx.Client(base_url=topology.api_url, headers=headers, timeout=120) as client:
        yield client


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
