"""Workers this package starts and kills itself, on queues of their own.

Outside tests/e2e on purpose: the e2e package's worker has stopped before these tests run, so no
other worker can pick up (or sweep) the jobs they kill the worker of.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import REPO_ROOT

GPU_QUEUE = "recovery-gpu"
CPU_QUEUE = "recovery-cpu"
# Short, so that a killed worker's job counts as abandoned a few seconds later.
LEASE_SECONDS = 3


@pytest.fixture(scope="package")
def recovery_settings(settings):
    return settings.model_copy(
        update={"gpu_queue": GPU_QUEUE, "cpu_queue": CPU_QUEUE, "job_lease_seconds": LEASE_SECONDS}
    )


@pytest.fixture(scope="package")
def recovery_client(recovery_settings, demo_foundation) -> Iterator[TestClient]:
    from api.app import create_app
    from worker.celery_app import make_celery
    from worker.tasks import RUN_JOB

    celery = make_celery(recovery_settings)
    celery.control.purge()
    app = create_app(
        recovery_settings,
        enqueue=lambda job_id: celery.send_task(RUN_JOB, args=[job_id]),
        start_worker=False,
    )
    with TestClient(app) as client:
        yield client


StartWorker = Callable[..., subprocess.Popen]


@pytest.fixture()
def start_worker(recovery_settings, tmp_path) -> Iterator[StartWorker]:
    """Starts a real Celery worker on the recovery queues; all are killed at the end."""
    from worker.local import worker_command

    started: list[subprocess.Popen] = []

    def start(name: str, max_attempts: int = 3) -> subprocess.Popen:
        env = {
            **os.environ,
            "MLFT_GPU_QUEUE": GPU_QUEUE,
            "MLFT_CPU_QUEUE": CPU_QUEUE,
            "MLFT_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "MLFT_MAX_ATTEMPTS": str(max_attempts),
        }
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                worker_command([GPU_QUEUE, CPU_QUEUE]),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        deadline = time.monotonic() + 120
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def training_processes(job_id: str) -> list[int]:
    """Pids of mace training processes working on the job (their arguments name its folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"mace.cli.run_train" in a for a in arguments) and any(
            job_id.encode() in a for a in arguments
        ):
            pids.append(int(entry.name))
    return pids


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(autouse=True)
def no_leftover_work(settings) -> None:
    """Earlier packages leave rows queued on purpose (jobs never sent to a worker, work whose
    broker was down); every worker's sweeper sends those again. Ended here, so a worker these
    tests start runs only the work its test submits, and the test's timing is its own; no
    worker of these tests is alive between them."""
    from sqlalchemy import create_engine, delete, update

    from core.service.models import Evaluation, Job, JobState, ReplaySet, WorkerHeartbeat

    engine = create_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        for table in (Job, Evaluation, ReplaySet):
            connection.execute(
                update(table)
                .where(table.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .values(state=JobState.CANCELLED, lease_owner=None)
            )
        # Rows of workers that earlier tests killed (a killed worker cannot remove its own).
        connection.execute(delete(WorkerHeartbeat))
    engine.dispose()
