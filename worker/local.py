"""The embedded worker: a real Celery worker process beside the API when no broker is set, kept
alive by a supervisor that restarts it whenever it dies (killed, out of memory)."""

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.config import Settings, get_settings
from core.service.processes import stop_process

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
# A worker that dies at once (a broken install) is restarted ever more slowly, up to this.
MAX_RESTART_DELAY_SECONDS = 60.0
# A worker that lived this long before dying was working, and is restarted at once.
HEALTHY_UPTIME_SECONDS = 60.0
POLL_SECONDS = 0.5


def worker_command(queues: list[str] | None = None) -> list[str]:
    """A worker running MLFT_GPU_JOBS_PER_WORKER jobs at once (one by default); by default on
    both queues, so one local worker serves all."""
    settings = get_settings()
    if queues is None:
        queues = [settings.gpu_queue, settings.cpu_queue]
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        # Several jobs at once share the GPU by their predicted peaks (gpu_share.py); one job
        # runs in the worker process itself.
        *(
            ["--pool=solo", "--concurrency=1"]
            if settings.gpu_jobs_per_worker == 1
            else ["--pool=prefork", f"--concurrency={settings.gpu_jobs_per_worker}"]
        ),
        f"--queues={','.join(queues)}",
        "--loglevel=INFO",
    ]


def worker_environment(settings: Settings) -> dict[str, str]:
    """The API's settings, handed to the worker process (it reads them from the environment)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"BROKER_URL", "MLFT_BROKER_URL", "DATABASE_URL", "MLFT_DATABASE_URL"}
    }
    # The worker runs from the repository root, so relative folders are handed over resolved.
    env["MLFT_DATA_DIR"] = str(settings.data_dir.resolve())
    env["MLFT_MODELS_DIR"] = str(settings.resolved_models_dir.resolve())
    env["DATABASE_URL"] = settings.resolved_database_url
    env["MLFT_GPU_QUEUE"] = settings.gpu_queue
    env["MLFT_CPU_QUEUE"] = settings.cpu_queue
    env["MLFT_JOB_LEASE_SECONDS"] = str(settings.job_lease_seconds)
    env["MLFT_MAX_ATTEMPTS"] = str(settings.max_attempts)
    if "max_edges_per_batch" in settings.model_fields_set:
        # Only a budget the operator set: unset, a GPU worker plans its own.
        env["MLFT_MAX_EDGES_PER_BATCH"] = str(settings.max_edges_per_batch)
    env["MLFT_GPU_JOBS_PER_WORKER"] = str(settings.gpu_jobs_per_worker)
    return env


def start_local_worker(settings: Settings) -> subprocess.Popen:
    log_file = settings.data_dir / "logs" / "worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            worker_command([settings.gpu_queue, settings.cpu_queue]),
            cwd=REPO_ROOT,
            env=worker_environment(settings),
            stdout=log,
            stderr=log,
        )
    logger.info("embedded worker started pid=%d log=%s", process.pid, log_file)
    return process


def restart_delay(previous: float, uptime: float) -> float:
    """None after a worker that had been working; doubling waits after one that dies at start."""
    if uptime >= HEALTHY_UPTIME_SECONDS:
        return 0.0
    return min(max(2 * previous, 1.0), MAX_RESTART_DELAY_SECONDS)


class WorkerSupervisor:
    """Starts the embedded worker and restarts it, with a log line, each time it dies.

    The jobs a dead worker held are taken care of by the lease sweep (core/service/leases.py), which
    the restarted worker runs when it starts and then once per lease period.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.restarts = 0
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    @property
    def process(self) -> subprocess.Popen | None:
        return self._process

    def start(self) -> "WorkerSupervisor":
        self._process = start_local_worker(self.settings)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=POLL_SECONDS * 4)
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                stop_process(self._process)

    def _watch(self) -> None:
        started = time.monotonic()
        delay = 0.0
        while not self._stopping.wait(POLL_SECONDS):
            process = self._process
            if process is None or process.poll() is None:
                continue
            code = process.returncode
            uptime = time.monotonic() - started
            delay = restart_delay(delay, uptime)
            logger.error(
                "embedded worker pid=%d died (exit code %s) after %.0f s; restarting it in %.0f s"
                " (see %s)",
                process.pid,
                code,
                uptime,
                delay,
                self.settings.data_dir / "logs" / "worker.log",
            )
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = start_local_worker(self.settings)
            self.restarts += 1
            started = time.monotonic()
            logger.warning(
                "embedded worker restarted pid=%d (restart %d)", self._process.pid, self.restarts
            )
