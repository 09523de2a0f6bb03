import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.service import wait_for
from core.service.processes import stop_process
from tests.conftest import REPO_ROOT


# Package scope: the worker stops after the e2e tests, so it never picks up jobs that later
# tests submit expecting them to stay queued.
@pytest.fixture(scope="package")
def worker(settings, demo_foundation) -> Iterator[subprocess.Popen]:
    """A real Celery worker process on the test PostgreSQL and Redis."""
    from worker.celery_app import app as celery_app
    from worker.local import worker_command

    celery_app.control.purge()
    log_path = settings.data_dir / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(worker_command(), cwd=REPO_ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while not celery_app.control.ping(timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the Celery worker did not start:\n{log_path.read_text()[-3000:]}")
    yield process
    stop_process(process)


def wait_for_job(client: httpx.Client, job_id: str, log: Path, timeout: float = 600) -> dict:
    try:
        # The finished job whole: with the learning curve and the split a status read omits.
        return wait_for(client, f"/jobs/{job_id}?include=epochs&include=split", timeout=timeout)
    except TimeoutError:
        pytest.fail(f"job {job_id} did not finish; worker log:\n{log.read_text()[-3000:]}")
