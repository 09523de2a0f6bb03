"""The API as a process of its own on a free port, for tests that need real HTTP."""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.service import free_port
from tests.conftest import REPO_ROOT


@contextmanager
def running_api(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`python <command> --host 127.0.0.1 --port <free>`; yields its base URL once /healthz
    answers, and stops it afterwards."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
