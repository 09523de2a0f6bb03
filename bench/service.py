"""Start the embedded service (`python -m api`: uvicorn + its local Celery worker) as a user would,
on loopback."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_VARIABLES = {"DATABASE_URL", "BROKER_URL", "MLFT_DATABASE_URL", "MLFT_BROKER_URL"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def embedded_service(data_dir: Path, models_dir: Path) -> Iterator[httpx.Client]:
    """No database or broker configured: SQLite, a folder broker and a local worker."""
    env = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    env["MLFT_DATA_DIR"] = str(data_dir)
    env["MLFT_MODELS_DIR"] = str(models_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        _wait_until_healthy(client, process, log_path)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=60)


def _wait_until_healthy(client: httpx.Client, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            client.get("/health").raise_for_status()
            return
        except httpx.TransportError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"the service did not start:\n{tail}") from error
            time.sleep(0.3)


def wait_for(client: httpx.Client, path: str, *, timeout: float = 1800, poll: float = 0.5) -> dict:
    """Poll a job or evaluation until it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if body["state"] in TERMINAL:
            return body
        time.sleep(poll)
    raise TimeoutError(f"{path} did not finish in {timeout} s")
