"""The embedded worker: a real Celery worker process beside the API when no broker is set."""

import logging
import os
import subprocess
import sys
from pathlib import Path

from core.config import Settings, get_settings

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent


def worker_command(queues: list[str] | None = None) -> list[str]:
    """A one-job-at-a-time worker; by default on both queues, so one local worker serves all."""
    if queues is None:
        settings = get_settings()
        queues = [settings.gpu_queue, settings.cpu_queue]
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--pool=solo", "--concurrency=1", f"--queues={','.join(queues)}", "--loglevel=INFO",
    ]


def start_local_worker(settings: Settings) -> subprocess.Popen:
    log_file = settings.data_dir / "logs" / "worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The worker runs from the repository root, so relative folders are handed over resolved.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"BROKER_URL", "MLFT_BROKER_URL", "DATABASE_URL", "MLFT_DATABASE_URL"}
    }
    env["MLFT_DATA_DIR"] = str(settings.data_dir.resolve())
    env["MLFT_MODELS_DIR"] = str(settings.resolved_models_dir.resolve())
    env["DATABASE_URL"] = settings.resolved_database_url
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            worker_command([settings.gpu_queue, settings.cpu_queue]),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    logger.info("embedded worker started pid=%d log=%s", process.pid, log_file)
    return process


def stop_local_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
