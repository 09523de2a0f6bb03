"""Start an API process on loopback as a user would: the embedded service (`python -m api`: uvicorn
+ its local Celery worker) or the API alone (`running_api`), for tests and benchmarks."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.service.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_VARIABLES = {"DATABASE_URL", "BROKER_URL", "MLFT_DATABASE_URL", "MLFT_BROKER_URL"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ApiProcess:
    popen: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:<port>
    log_path: Path


def health_answers(api: ApiProcess) -> bool:
    try:
        return httpx.get(f"{api.url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def running_api(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    ready: Callable[[ApiProcess], bool] = health_answers,
    timeout_s: float = 120.0,
) -> Iterator[ApiProcess]:
    """`python <args> --host 127.0.0.1 --port <free>` (`-m api`, or uvicorn with the app
    factory), yielded once `ready` (by default: /healthz answers) and stopped afterwards; the
    one way tests and benchmarks start an API process of their own."""
    port = free_port()
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *args, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    api = ApiProcess(popen, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready(api):
            if popen.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the API did not start:\n{tail}")
            time.sleep(0.3)
        yield api
    finally:
        stop_process(popen, grace_seconds=60)


@contextmanager
def embedded_service(data_dir: Path, models_dir: Path) -> Iterator[httpx.Client]:
    """No database or broker configured: SQLite, a folder broker and a local worker."""
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    env["MLFT_DATA_DIR"] = str(data_dir)
    env["MLFT_MODELS_DIR"] = str(models_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        running_api(["-m", "api"], env, data_dir / "api.log", timeout_s=90) as api,
        httpx.Client(base_url=api.url, timeout=60) as client,
    ):
        yield client


def wait_for(client: httpx.Client, path: str, *, timeout: float = 1800, poll: float = 0.5) -> dict:
    """Poll a job or evaluation until it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if body["state"] in TERMINAL:
            return body
        time.sleep(poll)
    raise TimeoutError(f"{path} did not finish in {timeout} s")
